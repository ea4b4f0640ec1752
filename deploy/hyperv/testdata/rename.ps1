# ksmg-deploy: rename-vm
Rename-VM -VM (Get-VM -Id '5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71') -NewName 'ksmg-1.ksmg-old'
