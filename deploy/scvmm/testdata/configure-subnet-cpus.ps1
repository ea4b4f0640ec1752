# ksmg-scvmm step=configure
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$vm = Get-SCVirtualMachine -VMMServer $vmm -ID 'vm-1'
if (-not $vm) { Fail ('VM {0} disappeared' -f 'vm-1') 'error' }
# Processors and memory change only while the VM is stopped (stop first).
Set-SCVirtualMachine -VM $vm -CPUCount 8 -MemoryMB 16384 -JobVariable j | Out-Null
$n = @(Get-SCVMNetwork -VMMServer $vmm | Where-Object { $_.Name -eq 'Mail DMZ' })
if ($n.Count -ne 1) { Fail ('{0} VM networks named {1}; expected one (Get-SCVMNetwork)' -f $n.Count, 'Mail DMZ') 'config' }
$sn = @(Get-SCVMSubnet -VMMServer $vmm -VMNetwork $n[0] | Where-Object { $_.Name -eq 'DMZ Prague' })
if ($sn.Count -ne 1) { Fail ('{0} VM subnets named {1} in VM network {2}; expected one (Get-SCVMSubnet)' -f $sn.Count, 'DMZ Prague', 'Mail DMZ') 'config' }
$a = @(Get-SCVirtualNetworkAdapter -VM $vm)[0]
Set-SCVirtualNetworkAdapter -VirtualNetworkAdapter $a -VMNetwork $n[0] -VMSubnet $sn[0] -VLanEnabled $false -JobVariable j | Out-Null
Out-Result ([ordered]@{ ok = $true })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

