# ksmg-appliance on a machine another builder made, over SSH: here the null
# builder connects to a VM that is already running (the plugin's tests boot
# the appliance image in QEMU for it). The provisioner runs the same Go
# steps `ksmg build` runs in its payload stage: our Debian package,
# accounts, data directories, units.
#
#   packer build -var host=10.0.0.5 -var private_key_file=~/.ssh/id_ed25519 \
#     -var bin_dir=bin images/examples/ssh.pkr.hcl

variable "host" {
  type = string
}

variable "port" {
  type    = number
  default = 22
}

variable "username" {
  type    = string
  default = "root"
}

variable "private_key_file" {
  type = string
}

variable "bin_dir" {
  type    = string
  default = "bin"
}

variable "spec" {
  type    = string
  default = ""
}

source "null" "vm" {
  ssh_host             = var.host
  ssh_port             = var.port
  ssh_username         = var.username
  ssh_private_key_file = var.private_key_file
}

build {
  sources = ["source.null.vm"]

  provisioner "ksmg-appliance" {
    bin_dir = var.bin_dir
    spec    = var.spec
    # A user other than root needs passwordless sudo.
    sudo = var.username != "root"
  }

  # What the machine now has, in the build log. The appliance mounts /tmp
  # noexec (ANSSI R28), so the script is run by sh rather than executed.
  provisioner "shell" {
    execute_command = "{{ .Vars }} sh '{{ .Path }}'"
    inline = [
      "dpkg-query -W -f='installed $${Package} $${Version}\\n' ksmg-appliance",
      "find /var/opt/kaspersky -maxdepth 2 -type d -printf 'directory %p %u:%g %m\\n'",
    ]
  }
}
