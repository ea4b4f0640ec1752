# ksmg-deploy: remove-vm
# The VM (turned off if it still runs; a guest shutdown comes first, in
# stop.ps1), its disks, and the node folders they sit in, but only folders
# inside the deployer's path.
$id = '5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71'
$root = 'D:\VMs\ksmg'.TrimEnd('\') + '\'
$dirs = @('D:\VMs\ksmg\ksmg-1')
if ($id) {
  $vm = Get-VM -Id $id -ErrorAction SilentlyContinue
  if ($vm) {
    if ($vm.State -eq 'Saved') { Remove-VMSavedState -VM $vm }
    elseif ($vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
    $disks = @(Get-VMHardDiskDrive -VM $vm | ForEach-Object { $_.Path } | Where-Object { $_ })
    $dirs += @($disks | ForEach-Object { Split-Path -Parent $_ })
    Remove-VM -VM $vm -Force
    $disks | ForEach-Object { Remove-Item -LiteralPath $_ -Force -ErrorAction SilentlyContinue }
  }
}
foreach ($dir in $dirs) {
  if ($dir -and $dir.StartsWith($root, [StringComparison]::OrdinalIgnoreCase) -and (Test-Path -LiteralPath $dir)) {
    Remove-Item -LiteralPath $dir -Recurse -Force
  }
}
