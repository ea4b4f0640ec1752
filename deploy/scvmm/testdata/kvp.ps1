# ksmg-scvmm step=kvp
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
# The keys are in the script, their values (secrets among them) come on
# standard input.
$items = @{}
$items['ksmg.admin.password'] = $KsmgInput['ksmg.admin.password']
$items['ksmg.eula.accepted'] = $KsmgInput['ksmg.eula.accepted']
$items['ksmg.hostname'] = $KsmgInput['ksmg.hostname']
foreach ($k in @($items.Keys)) { if ($null -eq $items[$k]) { Fail ('no value for KVP item {0} on standard input' -f $k) 'error' } }
# Host-to-guest items (Source 0) land in the guest's pool 0, where the
# first-boot wizard reads them; SCVMM has no cmdlet for them.
Invoke-Command -ComputerName ([string]$vm.VMHost.Name) -Credential $cred -ArgumentList ([string]$vm.VMId), $items -ScriptBlock {
  param($id, $items)
  $ns = 'root\virtualization\v2'
  $svc = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSystemManagementService
  $cs = Get-WmiObject -Namespace $ns -Class Msvm_ComputerSystem -Filter "Name='$id'"
  if (-not $cs) { throw "Hyper-V VM $id not found on $env:COMPUTERNAME" }
  function Done($r) {
    if ($r.ReturnValue -eq 0) { return $true }
    if ($r.ReturnValue -ne 4096) { return $false }
    do { Start-Sleep -Milliseconds 200; $job = [wmi]$r.Job } while ($job.JobState -in 3, 4)
    return $job.JobState -eq 7
  }
  foreach ($k in $items.Keys) {
    $i = ([wmiclass]"\\.\${ns}:Msvm_KvpExchangeDataItem").CreateInstance()
    $i.Name = $k; $i.Data = $items[$k]; $i.Source = 0
    $x = $i.PSBase.GetText(1)
    if (-not (Done ($svc.AddKvpItems($cs, @($x)))) -and -not (Done ($svc.ModifyKvpItems($cs, @($x))))) { throw "KVP item $k was not set on $env:COMPUTERNAME" }
  }
}
Out-Result ([ordered]@{ count = 3 })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

