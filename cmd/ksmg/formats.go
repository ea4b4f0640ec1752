package main

import "github.com/ksmg-appliance/ksmg/images/formats"

// registerFormats registers the disk formats (ova, vhdx) with images, once
// per process (images keeps a registry).
var registerFormats = formats.Register
