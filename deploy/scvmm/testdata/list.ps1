# ksmg-scvmm step=list
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
# Every VM whose Description carries the deploy mark.
$vms = @(Get-SCVirtualMachine -VMMServer $vmm | Where-Object { [string]$_.Description -match '(^|\s)ksmg\.deploy=' })
Out-Result ([ordered]@{ vms = @($vms | ForEach-Object { [ordered]@{
  id = [string]$_.ID; name = [string]$_.Name; description = [string]$_.Description; state = [string]$_.VirtualMachineState; host = [string]$_.VMHost.Name
} }) })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

