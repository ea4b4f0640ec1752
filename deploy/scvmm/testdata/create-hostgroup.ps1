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
$opt = @{ Name = 'ksmg-1'; Description = 'ksmg.deploy=pending ksmg.deploy.cpus=4'; StartAction = 'AlwaysAutoTurnOnVM'; StopAction = 'ShutdownGuestOS'; RunAsynchronously = $true; JobVariable = 'j'; CPUCount = 4; MemoryMB = 8192 }
$g = @(Get-SCVMHostGroup -VMMServer $vmm | Where-Object { $_.Path -eq 'All Hosts\Prague' -or $_.Name -eq 'All Hosts\Prague' })
if ($g.Count -ne 1) { Fail ('{0} host groups named {1}; expected one (give the path, e.g. All Hosts\Prague)' -f $g.Count, 'All Hosts\Prague') 'config' }
$r = @(Get-SCVMHostRating -VMHostGroup $g[0] -VMTemplate $t -VMName 'ksmg-1' -DiskSpaceGB 40 | Sort-Object Rating -Descending)
if ($r.Count -eq 0 -or $r[0].Rating -le 0) {
  $why = ($r | ForEach-Object { '{0}: {1}' -f $_.Name, (($_.ZeroRatingReasonList | ForEach-Object { [string]$_ }) -join '; ') }) -join ' | '
  Fail ('no host in {0} can take {1}: {2}' -f 'All Hosts\Prague', 'ksmg-1', $why) 'error'
}
$vmh = $r[0].VMHost
$path = @($vmh.VMPaths)[0]
New-SCVirtualMachine @opt -VMTemplate $t -VMHost $vmh -Path $path | Out-Null
$h = [string]$vmh.Name
Out-Result ([ordered]@{ job = [string]$j.ID; host = $h })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

