# ksmg-deploy: create-vm
$vm = New-VM -Name 'ksmg-1' -Generation 2 -Path 'D:\VMs\ksmg' -VHDPath 'D:\VMs\ksmg\ksmg-1\ksmg-1.vhdx' -MemoryStartupBytes 8589934592 -SwitchName 'Mail DMZ''s switch'
try {
  # The pending mark first, so an interrupted deploy leaves a VM that the
  # next run recognises as its own leftover. The gateway starts with its
  # host and is shut down, not turned off or saved, when the host stops.
  Set-VM -VM $vm -Notes 'ksmg.deploy=pending
ksmg.deploy.image=sha256:ab
ksmg.deploy.version=0.1.0
ksmg.deploy.cpus=4
ksmg.deploy.memory=8192
ksmg.deploy.disk=100
ksmg.deploy.network=Mail%20DMZ%27s%20switch:120' -StaticMemory -ProcessorCount 4 -AutomaticStartAction Start -AutomaticStartDelay 0 -AutomaticStopAction ShutDown
  # Debian boots through shim, signed by the Microsoft UEFI CA: the
  # template MicrosoftUEFICertificateAuthority, by its ID (the same on every
  # host and language; the name form is reported to fail on some hosts).
  Set-VMFirmware -VM $vm -EnableSecureBoot On -SecureBootTemplateId ([guid]'272e7447-90a4-4563-a4b9-8e4ab00526ce')
  Set-VMNetworkAdapterVlan -VM $vm -Access -VlanId 120
} catch {
  Remove-VM -VM $vm -Force -ErrorAction SilentlyContinue
  throw
}
$vm.VMId.Guid
