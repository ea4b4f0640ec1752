# ksmg-deploy: resize-disk
Resize-VHD -Path 'D:\VMs\ksmg\ksmg-1\ksmg-1.vhdx' -SizeBytes 214748364800
