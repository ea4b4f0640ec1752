# The ksmg appliance as a Packer template: the same raw disk, OVA, VHDX and
# SHA256SUMS as `ksmg build`, byte for byte from the same package cache and
# SOURCE_DATE_EPOCH. The builder needs root (mmdebstrap, chroot), like
# `ksmg build`; the plugin must be installed (README: Packer plugin).
#
#   make build
#   sudo packer build -var bin_dir=bin -var output_directory=out images/ksmg.pkr.hcl

variable "bin_dir" {
  type        = string
  default     = "bin"
  description = "Directory with ksmg-gatewayd and ksmg-firstboot (make build)."
}

variable "cache_dir" {
  type        = string
  default     = ""
  description = "Package cache; empty: $KSMG_CACHE, else ~/.cache/ksmg."
}

variable "output_directory" {
  type        = string
  default     = "out"
  description = "Where the raw disk, the OVA, the VHDX and SHA256SUMS go."
}

variable "spec" {
  type        = string
  default     = ""
  description = "Appliance spec (YAML); empty: the embedded default."
}

source "ksmg-rootfs" "appliance" {
  spec             = var.spec
  bin_dir          = var.bin_dir
  cache_dir        = var.cache_dir
  output_directory = var.output_directory
}

build {
  sources = ["source.ksmg-rootfs.appliance"]

  # Provisioners placed here (shell, file, ksmg-harden, ...) run inside the
  # root file system after the ksmg payload, before it is scrubbed and
  # becomes the disk; see examples/provisioners.pkr.hcl.

  # Each gets the raw disk and adds its file and line to SHA256SUMS.
  post-processor "ksmg-ova" {}
  post-processor "ksmg-vhdx" {}
}
