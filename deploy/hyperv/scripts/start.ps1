# ksmg-deploy: start-vm
Start-VM -VM (Get-VM -Id {{q .ID}})
