# Stock Packer provisioners inside the appliance's root file system: the
# ksmg-rootfs builder hands Packer a communicator into the root (commands
# run there with the root's own /bin/sh, files land there), between the
# ksmg payload and the scrub. What they leave is on the disk.
#
#   sudo packer build -var bin_dir=bin -var output_directory=out-custom images/examples/provisioners.pkr.hcl

variable "bin_dir" {
  type    = string
  default = "bin"
}

variable "cache_dir" {
  type    = string
  default = ""
}

variable "output_directory" {
  type    = string
  default = "out-custom"
}

source "ksmg-rootfs" "custom" {
  bin_dir          = var.bin_dir
  cache_dir        = var.cache_dir
  output_directory = var.output_directory
}

build {
  sources = ["source.ksmg-rootfs.custom"]

  # A site file, uploaded with its mode (0644 here); it replaces Debian's
  # /etc/motd and keeps that file's owner.
  provisioner "file" {
    source      = "${path.root}/files/motd"
    destination = "/etc/motd"
  }

  # Commands run inside the root: what they see is the appliance's Debian
  # 13, not the build host.
  provisioner "shell" {
    inline = [
      "cat /etc/debian_version > /etc/ksmg-packer-debian-version",
      "install -d -m 0750 /etc/opt/site",
      "echo \"built $(date -u -d @$SOURCE_DATE_EPOCH +%F)\" > /etc/opt/site/stamp",
    ]
  }
}
