# ksmg-deploy: rename-vm
Rename-VM -VM (Get-VM -Id {{q .ID}}) -NewName {{q .Name}}
