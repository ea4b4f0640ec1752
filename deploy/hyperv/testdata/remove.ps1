# ksmg-deploy: remove-vm
$id = '5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71'
if ($id) {
  $vm = Get-VM -Id $id -ErrorAction SilentlyContinue
  if ($vm) {
    if ($vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
    $disks = @(Get-VMHardDiskDrive -VM $vm | ForEach-Object { $_.Path })
    Remove-VM -VM $vm -Force
    $disks | ForEach-Object { Remove-Item -LiteralPath $_ -Force -ErrorAction SilentlyContinue }
  }
}
# The node's folder holds its disk and the VM's configuration.
$dir = 'D:\VMs\ksmg\ksmg-1'
if (Test-Path -LiteralPath $dir) { Remove-Item -LiteralPath $dir -Recurse -Force }
