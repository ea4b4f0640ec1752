# ksmg-deploy: remove-kvp
# First boot reported completion (ksmg.firstboot=done): the secret
# host-to-guest items (Source 0) leave the VM's configuration on the host.
# RemoveKvpItems matches items by Name and Source, so only the key names
# travel, never the values.
{{template "kvpvm" .}}$keys = @({{range $i, $k := .Keys}}{{if $i}}, {{end}}{{q $k}}{{end}})
$items = @($keys | ForEach-Object {
  $item = $class.CreateInstance()
  $item.Name = $_
  $item.Data = ''
  $item.Source = 0
  $item.PSBase.GetText(1)
})
$r = $vmms.RemoveKvpItems($vm, $items)
if ($r.ReturnValue -eq 4096) {
  $job = [wmi]$r.Job
  while ($job.JobState -eq 3 -or $job.JobState -eq 4) { Start-Sleep -Milliseconds 200; $job.Get() }
  if ($job.JobState -ne 7) { throw ('RemoveKvpItems job failed: {0} {1}' -f $job.ErrorCode, $job.ErrorDescription) }
} elseif ($r.ReturnValue -ne 0) {
  throw ('RemoveKvpItems returned {0}' -f $r.ReturnValue)
}
