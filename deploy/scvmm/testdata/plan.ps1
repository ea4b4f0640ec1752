# ksmg-scvmm step=plan
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$vms = @(Get-SCVirtualMachine -VMMServer $vmm -Name 'ksmg-1' | Where-Object { $_.Name -eq 'ksmg-1' })
Out-Result ([ordered]@{ vms = @($vms | ForEach-Object { [ordered]@{
  id = [string]$_.ID; description = [string]$_.Description; state = [string]$_.VirtualMachineState; host = [string]$_.VMHost.Name
  ips = @($_.VirtualNetworkAdapters | ForEach-Object { $_.IPv4Addresses } | Where-Object { $_ } | ForEach-Object { [string]$_ })
} }) })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

