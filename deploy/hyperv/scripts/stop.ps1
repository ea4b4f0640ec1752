# ksmg-deploy: stop-vm
# A guest shutdown through the integration services first; the VM is
# turned off only when it is not off within the timeout. A saved state is
# discarded.
$vm = Get-VM -Id {{q .ID}}
if ($vm.State -eq 'Saved') { Remove-VMSavedState -VM $vm; $vm = Get-VM -Id {{q .ID}} }
if ($vm.State -eq 'Running') {
  $job = Stop-VM -VM $vm -Force -AsJob
  if (-not (Wait-Job -Job $job -Timeout {{.TimeoutSeconds}})) { Stop-Job -Job $job }
  Remove-Job -Job $job -Force
  $vm = Get-VM -Id {{q .ID}}
}
if ($vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
