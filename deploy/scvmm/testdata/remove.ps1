# ksmg-scvmm step=remove
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$vm = Get-SCVirtualMachine -VMMServer $vmm -ID '3f2b8e4c-0000-4000-8000-000000000001'
if (-not $vm) { Out-Result ([ordered]@{ job = '' }); exit 0 }
# stop comes first (a guest shutdown, then off); Remove-SCVirtualMachine
# deletes the VM's files with it.
Remove-SCVirtualMachine -VM $vm -RunAsynchronously -JobVariable j | Out-Null
Out-Result ([ordered]@{ job = [string]$j.ID })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

