# ksmg-scvmm step=disk
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$d = @(Get-SCVirtualHardDisk -VMMServer $vmm | Where-Object { $_.SharePath -eq '\\lib.example.com\MSSCVMMLibrary\ksmg\ksmg-0123456789ab.vhdx' })
if ($d.Count -gt 1) { Fail ('{0} virtual hard disks at {1}; remove the duplicates' -f $d.Count, '\\lib.example.com\MSSCVMMLibrary\ksmg\ksmg-0123456789ab.vhdx') 'config' }
if ($d.Count -eq 0) { Out-Result ([ordered]@{ id = '' }); exit 0 }
Out-Result ([ordered]@{ id = [string]$d[0].ID; name = [string]$d[0].Name; size = [int64]$d[0].MaximumSize })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

