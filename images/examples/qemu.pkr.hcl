# The appliance's payload on a VM that Packer's qemu builder makes from
# Debian's trixie cloud image, then the OVA and VHDX from its qcow2 disk
# (converted with qemu-img). Documented, not run in CI (it downloads the
# image and boots it); `packer validate` checks it there.
#
#   packer build -var bin_dir=bin images/examples/qemu.pkr.hcl
#
# The cloud image takes an SSH key for its user "debian" (passwordless
# sudo) from a cloud-init seed: make seed.iso with `cloud-localds`
# (cloud-image-utils) from a user-data that lists the public key of
# private_key_file under ssh_authorized_keys.

variable "bin_dir" {
  type    = string
  default = "bin"
}

variable "private_key_file" {
  type    = string
  default = "~/.ssh/id_ed25519"
}

variable "iso_checksum" {
  type        = string
  default     = "file:https://cloud.debian.org/images/cloud/trixie/latest/SHA512SUMS"
  description = "The image's checksum; \"none\" skips the check (the tests' offline validate)."
}

variable "seed_iso" {
  type    = string
  default = "seed.iso"
}

source "qemu" "debian" {
  iso_url              = "https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2"
  iso_checksum         = var.iso_checksum
  disk_image           = true
  format               = "qcow2"
  disk_size            = "8G"
  accelerator          = "kvm"
  headless             = true
  qemuargs             = [["-cdrom", var.seed_iso]]
  ssh_username         = "debian"
  ssh_private_key_file = var.private_key_file
  ssh_timeout          = "10m"
  shutdown_command     = "sudo poweroff"
  output_directory     = "output-qemu"
}

build {
  sources = ["source.qemu.debian"]

  provisioner "ksmg-appliance" {
    bin_dir = var.bin_dir
    sudo    = true
  }

  post-processor "ksmg-ova" {
    output_directory = "dist"
  }
  post-processor "ksmg-vhdx" {
    output_directory = "dist"
  }
}
