# Integration metadata of the ksmg Packer plugin (the layout of HashiCorp's
# integration template); the components' docs beside it are compiled from
# docs/ by ci/generate.sh.
integration {
  name        = "ksmg appliance"
  description = "Build the ksmg mail-security gateway appliance (raw disk, OVA, VHDX) and install its payload on any builder's machine."
  identifier  = "packer/ksmg-appliance/ksmg"
  docs {
    process_docs    = true
    readme_location = "./README.md"
    external_url    = "https://github.com/ksmg-appliance/ksmg"
  }
  license {
    type = "proprietary"
    url  = "https://github.com/ksmg-appliance/ksmg/blob/main/appliance/EULA.txt"
  }
  component {
    type = "builder"
    name = "ksmg-rootfs"
    slug = "rootfs"
  }
  component {
    type = "provisioner"
    name = "ksmg-appliance"
    slug = "appliance"
  }
  component {
    type = "provisioner"
    name = "ksmg-harden"
    slug = "harden"
  }
  component {
    type = "post-processor"
    name = "ksmg-ova"
    slug = "ova"
  }
  component {
    type = "post-processor"
    name = "ksmg-vhdx"
    slug = "vhdx"
  }
}
