# ksmg-scvmm step=template
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$t = Get-SCVMTemplate -VMMServer $vmm | Where-Object { $_.Name -eq 'ksmg-0123456789ab' } | Select-Object -First 1
if ($t) { Out-Result ([ordered]@{ id = [string]$t.ID; created = $false }); exit 0 }
$vhd = Get-SCVirtualHardDisk -VMMServer $vmm -ID 'disk-1'
if (-not $vhd) { Fail ('virtual hard disk {0} is no longer in the library' -f 'disk-1') 'error' }
$hw = Get-SCHardwareProfile -VMMServer $vmm | Where-Object { $_.Name -eq 'ksmg-0123456789ab-hw' } | Select-Object -First 1
if (-not $hw) {
  $g = [guid]::NewGuid()
  # A Generation 2 profile gets no SCSI adapter by itself, and the boot
  # disk (SCSI 0:0) needs one.
  New-SCVirtualScsiAdapter -VMMServer $vmm -JobGroup $g -AdapterID 7 -ShareVirtualScsiAdapter $false -ScsiControllerType DefaultTypeNoType | Out-Null
  New-SCVirtualNetworkAdapter -VMMServer $vmm -JobGroup $g -Synthetic -MACAddressType Dynamic | Out-Null
  $hw = New-SCHardwareProfile -VMMServer $vmm -Name 'ksmg-0123456789ab-hw' -Generation 2 -CPUCount 2 -MemoryMB 4096 `
    -SecureBootEnabled $true -SecureBootTemplate 'MicrosoftUEFICertificateAuthority' -FirstBootDevice 'SCSI,0,0' `
    -Description 'ksmg appliance: Generation 2, Secure Boot' -JobGroup $g -JobVariable j
}
if (@(Get-SCVirtualScsiAdapter -HardwareProfile $hw).Count -lt 1) {
  # A profile from before (or made by hand) without one: add it.
  New-SCVirtualScsiAdapter -HardwareProfile $hw -AdapterID 7 -ShareVirtualScsiAdapter $false -ScsiControllerType DefaultTypeNoType -JobVariable j | Out-Null
  $hw = Get-SCHardwareProfile -VMMServer $vmm -ID $hw.ID
  if (@(Get-SCVirtualScsiAdapter -HardwareProfile $hw).Count -lt 1) { Fail ('hardware profile {0} has no SCSI adapter for the boot disk' -f 'ksmg-0123456789ab-hw') 'config' }
}
$os = Get-SCOperatingSystem -VMMServer $vmm | Where-Object { $_.Name -eq 'Debian GNU/Linux 12 (64 bit)' } | Select-Object -First 1
if (-not $os) { Fail ('operating system {0} is not known to SCVMM (Get-SCOperatingSystem)' -f 'Debian GNU/Linux 12 (64 bit)') 'config' }
$t = New-SCVMTemplate -Name 'ksmg-0123456789ab' -VirtualHardDisk $vhd -HardwareProfile $hw -Generation 2 -OperatingSystem $os -NoCustomization `
  -SecureBootEnabled $true -SecureBootTemplate 'MicrosoftUEFICertificateAuthority' -Description 'ksmg appliance template' -JobVariable j
Out-Result ([ordered]@{ id = [string]$t.ID; created = $true })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

