# ksmg-scvmm step=job
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$j = Get-SCJob -VMMServer $vmm -ID '9d1c7a52-0000-4000-8000-000000000002'
if (-not $j) { Fail ('SCVMM job {0} not found' -f '9d1c7a52-0000-4000-8000-000000000002') 'error' }
$step = ''
if ([string]$j.Status -in @('Failed', 'Canceled')) {
  try {
    $s = Get-SCStep -Job $j
    $f = @(@($s) + @($s.Children) | Where-Object { [string]$_.Status -eq 'Failed' }) | Select-Object -Last 1
    if ($f) { $step = [string]$f.Description; if (-not $step) { $step = [string]$f.Name } }
  } catch {}
}
Out-Result ([ordered]@{
  name = [string]$j.Name; status = [string]$j.Status; progress = [string]$j.Progress; step = $step
  problem = [string]$j.ErrorInfo.Problem; action = [string]$j.ErrorInfo.RecommendedAction; code = [string]$j.ErrorInfo.Code
})

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

