# ksmg-deploy: remove-vm
$id = {{q .ID}}
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
$dir = {{q .Dir}}
if (Test-Path -LiteralPath $dir) { Remove-Item -LiteralPath $dir -Recurse -Force }
