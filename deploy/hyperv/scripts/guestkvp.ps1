# ksmg-deploy: guest-kvp
# Guest-to-host items (the guest's pool 1, /var/lib/hyperv/.kvp_pool_1) as
# the XML-embedded Msvm_KvpExchangeDataItem instances of GuestExchangeItems;
# the deployer decodes them. None while the guest's daemon reports none.
$ns = 'root\virtualization\v2'
$vm = Get-WmiObject -Namespace $ns -Class Msvm_ComputerSystem -Filter ("Name='{0}'" -f {{q .ID}})
if (-not $vm) { throw ('no VM with id {0}' -f {{q .ID}}) }
$items = @($vm.GetRelated('Msvm_KvpExchangeComponent') | ForEach-Object { $_.GuestExchangeItems } | Where-Object { $_ } | ForEach-Object { [string]$_ })
ConvertTo-Json -Compress -InputObject ([ordered]@{ items = $items })
