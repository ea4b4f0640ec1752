# ksmg-deploy: reconfigure-vm
$vm = Get-VM -Id '5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71'
# Processors and memory change only while the VM is off (stop-vm first).
Set-VM -VM $vm -ProcessorCount 8 -MemoryStartupBytes 17179869184
# A VHDX on the SCSI controller grows while the VM runs.
$d = @(Get-VMHardDiskDrive -VM $vm)[0]
Resize-VHD -Path $d.Path -SizeBytes 214748364800
Connect-VMNetworkAdapter -VMNetworkAdapter @(Get-VMNetworkAdapter -VM $vm)[0] -SwitchName 'Mail'
Set-VMNetworkAdapterVlan -VM $vm -Access -VlanId 120
