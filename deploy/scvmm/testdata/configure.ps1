# ksmg-scvmm step=configure
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$vm = Get-SCVirtualMachine -VMMServer $vmm -ID 'vm-1'
if (-not $vm) { Fail ('VM {0} disappeared' -f 'vm-1') 'error' }
$n = @(Get-SCVMNetwork -VMMServer $vmm | Where-Object { $_.Name -eq 'Mail DMZ' })
if ($n.Count -ne 1) { Fail ('{0} VM networks named {1}; expected one (Get-SCVMNetwork)' -f $n.Count, 'Mail DMZ') 'config' }
$a = @(Get-SCVirtualNetworkAdapter -VM $vm)[0]
Set-SCVirtualNetworkAdapter -VirtualNetworkAdapter $a -VMNetwork $n[0] -VLanEnabled $true -VLanID 120 -JobVariable j | Out-Null
$d = @(Get-SCVirtualDiskDrive -VM $vm | Where-Object { $_.Bus -eq 0 -and $_.Lun -eq 0 })[0]
$cur = [int64]$d.VirtualHardDisk.MaximumSize
if (40GB -lt $cur) { Fail ('disk of {0} is {1} GiB; it cannot shrink to {2} GiB' -f 'ksmg-1', [math]::Ceiling($cur / 1GB), 40) 'config' }
if (40GB -gt $cur) { Expand-SCVirtualDiskDrive -VirtualDiskDrive $d -VirtualHardDiskSizeGB 40 -JobVariable j | Out-Null }
Out-Result ([ordered]@{ ok = $true })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

