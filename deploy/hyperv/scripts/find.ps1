# ksmg-deploy: find-vm
# Exact name match: Get-VM -Name would treat [ and * as wildcards.
$name = {{q .Name}}
$vms = @(Get-VM | Where-Object { $_.Name -eq $name })
if ($vms.Count -eq 0) { 'null'; exit 0 }
if ($vms.Count -gt 1) { throw ('{0} VMs are named {1}; ksmg needs the name to be unique on the host' -f $vms.Count, $name) }
$vm = $vms[0]
[pscustomobject]@{ id = $vm.VMId.Guid; name = $vm.Name; notes = [string]$vm.Notes; state = [string]$vm.State } | ConvertTo-Json -Compress
