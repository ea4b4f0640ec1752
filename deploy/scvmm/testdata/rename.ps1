# ksmg-scvmm step=rename
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$vm = Get-SCVirtualMachine -VMMServer $vmm -ID '3f2b8e4c-0000-4000-8000-000000000001'
if (-not $vm) { Fail ('VM {0} disappeared' -f '3f2b8e4c-0000-4000-8000-000000000001') 'error' }
Set-SCVirtualMachine -VM $vm -Name 'ksmg-1.ksmg-old' -JobVariable j | Out-Null
Out-Result ([ordered]@{ ok = $true })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

