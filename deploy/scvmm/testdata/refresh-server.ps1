# ksmg-scvmm step=refresh
$ErrorActionPreference = 'Stop'
function Out-Result($o) { [Console]::Out.WriteLine(($o | ConvertTo-Json -Compress -Depth 4)) }
function Fail([string]$msg, [string]$kind) { Out-Result ([ordered]@{ error = $msg; kind = $kind }); exit 1 }
try {
Import-Module VirtualMachineManager
$vmm = Get-SCVMMServer -ComputerName 'localhost'
$p = '\\lib.example.com\MSSCVMMLibrary\ksmg\ksmg-0123456789ab.vhdx'
$share = @(Get-SCLibraryShare -VMMServer $vmm | Where-Object {
  $p.StartsWith(([string]$_.Path).TrimEnd('\') + '\', [StringComparison]::OrdinalIgnoreCase) -and
  [string]$_.LibraryServer.Name -eq 'lib.example.com'
} | Sort-Object { ([string]$_.Path).Length } -Descending) | Select-Object -First 1
if (-not $share) { Fail ('no SCVMM library share holds {0}; add the share to the library or fix library_share' -f $p) 'config' }
$rel = $p.Substring(([string]$share.Path).TrimEnd('\').Length + 1)
$rel = Split-Path -Parent $rel
if ($rel) { Read-SCLibraryShare -LibraryShare $share -Path $rel -RunAsynchronously -JobVariable j | Out-Null }
else { Read-SCLibraryShare -LibraryShare $share -RunAsynchronously -JobVariable j | Out-Null }
Out-Result ([ordered]@{ job = [string]$j.ID; share = [string]$share.Path })

} catch {
  # The message and the command, not the script's text: a line of it may hold a secret.
  $m = [string]$_.Exception.Message
  if ($_.InvocationInfo.MyCommand) { $m = "$($_.InvocationInfo.MyCommand): $m" }
  if ($j -and $j.ErrorInfo) { $m = "$m (job $($j.Name) $($j.ID): $($j.ErrorInfo.Problem) $($j.ErrorInfo.RecommendedAction))" }
  Fail $m 'error'
}

