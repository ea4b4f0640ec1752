# ksmg-deploy: guest-ip
# IPAddresses come from the guest's KVP intrinsic items (hv_kvp_daemon).
$ips = @((Get-VM -Id {{q .ID}}).NetworkAdapters | ForEach-Object { $_.IPAddresses } | Where-Object { $_ })
$v4 = @($ips | Where-Object { $_ -match '^\d+\.\d+\.\d+\.\d+$' -and $_ -notlike '169.254.*' })
$v6 = @($ips | Where-Object { $_ -like '*:*' -and $_ -notlike 'fe80:*' })
@($v4 + $v6) | Select-Object -First 1
