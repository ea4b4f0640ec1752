# ksmg-deploy: list-vms
# Every VM whose notes carry the deploy mark, as find-vm reports one.
$vms = @(Get-VM | Where-Object { [string]$_.Notes -match '(^|\s)ksmg\.deploy=' } | ForEach-Object {
  [pscustomobject]@{ id = $_.VMId.Guid; name = $_.Name; notes = [string]$_.Notes; state = [string]$_.State }
})
ConvertTo-Json -Compress -InputObject ([ordered]@{ vms = $vms })
