# ksmg-deploy: add-kvp
# Host-to-guest items (Source 0) land in the guest's pool 0
# (/var/lib/hyperv/.kvp_pool_0), which the first-boot wizard reads. They are
# added while the VM is off, so they are there when hv_kvp_daemon starts.
# Only the keys are in this script: the values (secrets among them) come on
# standard input ($KsmgInput), never in script text or on a command line.
{{template "kvpvm" .}}$pairs = @(
{{- range $i, $k := .Keys}}{{if $i}},{{end}}
  [pscustomobject]@{ k = {{q $k}}; v = $KsmgInput[{{q $k}}] }
{{- end}}
)
# AddKvpItems takes at most 128 items per call.
for ($i = 0; $i -lt $pairs.Count; $i += 128) {
  $items = @($pairs[$i..([Math]::Min($i + 127, $pairs.Count - 1))] | ForEach-Object {
    if ($null -eq $_.v) { throw ('no value for KVP item {0} on standard input' -f $_.k) }
    $item = $class.CreateInstance()
    $item.Name = $_.k
    $item.Data = $_.v
    $item.Source = 0
    $item.PSBase.GetText(1)
  })
  $r = $vmms.AddKvpItems($vm, $items)
  if ($r.ReturnValue -eq 4096) {
    $job = [wmi]$r.Job
    while ($job.JobState -eq 3 -or $job.JobState -eq 4) { Start-Sleep -Milliseconds 200; $job.Get() }
    if ($job.JobState -ne 7) { throw ('AddKvpItems job failed: {0} {1}' -f $job.ErrorCode, $job.ErrorDescription) }
  } elseif ($r.ReturnValue -ne 0) {
    throw ('AddKvpItems returned {0}' -f $r.ReturnValue)
  }
}
{{- /* kvpvm: the management service, the VM and the KVP item class, shared
     with unkvp.ps1. */}}
{{- define "kvpvm"}}$ns = 'root\virtualization\v2'
$vmms = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSystemManagementService
$vm = Get-WmiObject -Namespace $ns -Class Msvm_ComputerSystem -Filter ("Name='{0}'" -f {{q .ID}})
if (-not $vm) { throw ('no VM with id {0}' -f {{q .ID}}) }
$class = [wmiclass]('\\.\{0}:Msvm_KvpExchangeDataItem' -f $ns)
{{end}}
