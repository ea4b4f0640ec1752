# ksmg-scvmm step=firstboot
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$vm = Get-SCVirtualMachine -VMMServer $vmm -ID 'vm-1'
if (-not $vm) { Fail ('VM {0} disappeared' -f 'vm-1') 'error' }
if (-not $KsmgInput['host_password']) { Fail 'no host password on standard input' 'error' }
$cred = New-Object System.Management.Automation.PSCredential('EXAMPLE\hvadmin', (ConvertTo-SecureString $KsmgInput['host_password'] -AsPlainText -Force))
# Guest-to-host items (the guest's pool 1), where first boot writes
# ksmg.firstboot=done once it applied its answers and scrubbed them. SCVMM
# does not show them, so the VM's Hyper-V host is asked; the raw
# XML-embedded Msvm_KvpExchangeDataItem instances go back to the driver.
$items = @(Invoke-Command -ComputerName ([string]$vm.VMHost.Name) -Credential $cred -ArgumentList ([string]$vm.VMId) -ScriptBlock {
  param($id)
  $ns = 'root\virtualization\v2'
  $cs = Get-WmiObject -Namespace $ns -Class Msvm_ComputerSystem -Filter "Name='$id'"
  if (-not $cs) { throw "Hyper-V VM $id not found on $env:COMPUTERNAME" }
  $cs.GetRelated('Msvm_KvpExchangeComponent') | ForEach-Object { $_.GuestExchangeItems } | Where-Object { $_ } | ForEach-Object { [string]$_ }
})
Out-Result ([ordered]@{ items = $items })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

