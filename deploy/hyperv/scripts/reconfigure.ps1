# ksmg-deploy: reconfigure-vm
$vm = Get-VM -Id {{q .ID}}
{{- if or .CPUs .MemoryBytes}}
# Processors and memory change only while the VM is off (stop-vm first).
Set-VM -VM $vm{{if .CPUs}} -ProcessorCount {{.CPUs}}{{end}}{{if .MemoryBytes}} -MemoryStartupBytes {{.MemoryBytes}}{{end}}
{{- end}}
{{- if .DiskBytes}}
# A VHDX on the SCSI controller grows while the VM runs.
$d = @(Get-VMHardDiskDrive -VM $vm)[0]
Resize-VHD -Path $d.Path -SizeBytes {{.DiskBytes}}
{{- end}}
{{- if .Switch}}
Connect-VMNetworkAdapter -VMNetworkAdapter @(Get-VMNetworkAdapter -VM $vm)[0] -SwitchName {{q .Switch}}
{{- if .VLAN}}
Set-VMNetworkAdapterVlan -VM $vm -Access -VlanId {{.VLAN}}
{{- else}}
Set-VMNetworkAdapterVlan -VM $vm -Untagged
{{- end}}
{{- end}}
