# ksmg-deploy: stop-vm
# A guest shutdown through the integration services first; the VM is
# turned off only when it is not off within the timeout. A saved state is
# discarded.
$vm = Get-VM -Id '5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71'
if ($vm.State -eq 'Saved') { Remove-VMSavedState -VM $vm; $vm = Get-VM -Id '5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71' }
if ($vm.State -eq 'Running') {
  $job = Stop-VM -VM $vm -Force -AsJob
  if (-not (Wait-Job -Job $job -Timeout 120)) { Stop-Job -Job $job }
  Remove-Job -Job $job -Force
  $vm = Get-VM -Id '5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71'
}
if ($vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
