# ksmg-scvmm step=unkvp
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
$keys = @('ksmg.admin.password', 'ksmg.cluster.join_token')
# First boot reported it applied and scrubbed its answers
# (ksmg.firstboot=done): the secret host-to-guest items (Source 0) leave the
# VM's configuration on the host. Only key names are sent, no values.
Invoke-Command -ComputerName ([string]$vm.VMHost.Name) -Credential $cred -ArgumentList ([string]$vm.VMId), $keys -ScriptBlock {
  param($id, $keys)
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
  foreach ($k in $keys) {
    $i = ([wmiclass]"\\.\${ns}:Msvm_KvpExchangeDataItem").CreateInstance()
    $i.Name = $k; $i.Data = ''; $i.Source = 0
    if (-not (Done ($svc.RemoveKvpItems($cs, @($i.PSBase.GetText(1)))))) { throw "KVP item $k was not removed on $env:COMPUTERNAME" }
  }
}
Out-Result ([ordered]@{ count = 2 })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

