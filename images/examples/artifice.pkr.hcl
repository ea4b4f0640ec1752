# ksmg-ova and ksmg-vhdx behind another builder: here the null builder and
# the artifice post-processor hand them a disk that was built before (for
# example by `make images`). A raw disk is used as it is; a qcow2, VMDK, VHD
# or VHDX disk is converted with qemu-img first.
#
#   packer build -var disk=out/ksmg-0.1.0.raw -var output_directory=dist images/examples/artifice.pkr.hcl

variable "disk" {
  type    = string
  default = "out/ksmg-0.1.0.raw"
}

variable "output_directory" {
  type    = string
  default = "dist"
}

source "null" "prebuilt" {
  communicator = "none"
}

build {
  sources = ["source.null.prebuilt"]

  # Two chains, each from the disk: one writes the OVA, the other the VHDX.
  post-processors {
    post-processor "artifice" {
      files = [var.disk]
    }
    post-processor "ksmg-ova" {
      output_directory = var.output_directory
    }
  }
  post-processors {
    post-processor "artifice" {
      files = [var.disk]
    }
    post-processor "ksmg-vhdx" {
      output_directory = var.output_directory
    }
  }
}
