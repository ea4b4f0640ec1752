# ksmg-deploy: set-notes
Set-VM -VM (Get-VM -Id {{q .ID}}) -Notes {{q .Notes}}
