# ksmg-deploy: resize-disk
Resize-VHD -Path {{q .VHDX}} -SizeBytes {{.SizeBytes}}
