// Package comm connects the Go provisioning steps and Packer: Chroot is the
// Packer communicator the ksmg-rootfs builder hands Packer's provisioners (a
// root file system directory on this host), and Target is a
// provisioner.Target over any Packer communicator (Chroot, or SSH to a VM
// another builder made), so the steps `ksmg build` runs also run there.
//
// Chroot is written here rather than taken from the SDK: the SDK's
// chroot.Communicator passes commands through `sh -c` on the host, so
// `$(…)` and backticks expand on the host; its Upload and Download follow
// absolute symlinks out of the root (an upload to /var/run/x writes the
// host's /run/x); and it drops the uploaded file's mode. The tests run the
// same confinement checks against both.
package comm
