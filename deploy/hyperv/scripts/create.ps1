# ksmg-deploy: create-vm
$vm = New-VM -Name {{q .Name}} -Generation 2 -Path {{q .Path}} -VHDPath {{q .VHDX}} -MemoryStartupBytes {{.MemoryBytes}} -SwitchName {{q .Switch}}
try {
  # The pending mark first, so an interrupted deploy leaves a VM that the
  # next run recognises as its own leftover. The gateway starts with its
  # host and is shut down, not turned off or saved, when the host stops.
  Set-VM -VM $vm -Notes {{q .Notes}} -StaticMemory -ProcessorCount {{.CPUs}} -AutomaticStartAction Start -AutomaticStartDelay 0 -AutomaticStopAction ShutDown
  # Debian boots through shim, signed by the Microsoft UEFI CA: the
  # template MicrosoftUEFICertificateAuthority, by its ID (the same on every
  # host and language; the name form is reported to fail on some hosts).
  Set-VMFirmware -VM $vm -EnableSecureBoot On -SecureBootTemplateId ([guid]'272e7447-90a4-4563-a4b9-8e4ab00526ce')
{{- if .VLAN}}
  Set-VMNetworkAdapterVlan -VM $vm -Access -VlanId {{.VLAN}}
{{- end}}
} catch {
  Remove-VM -VM $vm -Force -ErrorAction SilentlyContinue
  throw
}
$vm.VMId.Guid
