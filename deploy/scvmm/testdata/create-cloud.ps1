# ksmg-scvmm step=create
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$t = Get-SCVMTemplate -VMMServer $vmm -ID 'tmpl-1'
if (-not $t) { Fail ('template {0} not found' -f 'tmpl-1') 'error' }
# The gateway starts with its host and is shut down, not saved or turned
# off, when the host stops.
$opt = @{ Name = 'ksmg-1'; Description = 'ksmg.deploy=pending'; StartAction = 'AlwaysAutoTurnOnVM'; StopAction = 'ShutdownGuestOS'; RunAsynchronously = $true; JobVariable = 'j'; CPUCount = 4 }
$c = Get-SCCloud -VMMServer $vmm | Where-Object { $_.Name -eq 'Mail ''DMZ'' cloud' }
if (@($c).Count -ne 1) { Fail ('{0} clouds named {1}; expected one (Get-SCCloud)' -f @($c).Count, 'Mail ''DMZ'' cloud') 'config' }
$cfg = New-SCVMConfiguration -VMTemplate $t -Name 'ksmg-1' -Cloud $c
Update-SCVMConfiguration -VMConfiguration $cfg | Out-Null
New-SCVirtualMachine @opt -VMConfiguration $cfg -Cloud $c | Out-Null
$h = [string]$cfg.VMHost.Name
Out-Result ([ordered]@{ job = [string]$j.ID; host = $h })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

