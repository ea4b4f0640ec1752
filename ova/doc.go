// Package ova packages the appliance's raw disk as an OVA for VMware ESXi and
// vSphere, and inspects OVAs.
//
// An OVA written by Write is a ustar archive of exactly three members, in
// this order (the order vSphere needs to stream it):
//
//	<name>-<version>.ovf         OVF 1.0 descriptor, VMware dialect
//	<name>-<version>.mf          SHA256(member)= hex, one line per member
//	<name>-<version>-disk1.vmdk  streamOptimized VMDK (package ova/vmdk)
//
// The descriptor asks for virtual hardware vmx-15 or newer, EFI firmware with
// Secure Boot, a PVSCSI controller (the image's kernel has vmw_pvscsi, no
// LSI Logic driver), a VMXNET3 NIC, disk.EnableUUID=TRUE, the EULA, and the
// first-boot properties of Properties delivered through the
// com.vmware.guestInfo transport. The guest OS is vmw:osType
// "debian12_64Guest" (known to vSphere 8.0U1 and later; "debian13_64Guest"
// only exists from vSphere 9), with the CIM id 96 "Debian 64-bit" version 12
// as the fallback older hosts map to their own newest Debian type.
//
// # First-boot properties
//
// vSphere shows each property in the deploy wizard, grouped by Category, with
// its Label and Description, and hands the values to the guest as the OVF
// environment XML in the guestinfo variable "guestinfo.ovfEnv" (read it with
// `vmtoolsd --cmd "info-get guestinfo.ovfEnv"`): a
// <PropertySection> of <Property oe:key="ksmg.hostname" oe:value="..."/>.
// A standalone ESXi host has no vApp options and does not deliver the
// environment by itself: deploy there with `ovftool --X:injectOvfEnv` or
// `govc import.ova` with InjectOvfEnv, which write guestinfo.ovfEnv; without
// an environment the console wizard asks at first boot.
//
//	key                          type     default  meaning
//	ksmg.hostname                string   ksmg     host name (FQDN allowed)
//	ksmg.network.mode            string   dhcp     "dhcp" or "static"
//	ksmg.network.address         string            static IPv4 address
//	ksmg.network.prefix          uint8    24       static prefix length 1..32
//	ksmg.network.gateway         string            static default gateway
//	ksmg.network.dns             string            DNS servers, comma separated
//	ksmg.network.search          string            DNS search domain
//	ksmg.network.ipv6.address    string            static IPv6 address/prefix
//	ksmg.network.ipv6.gateway    string            static IPv6 default gateway
//	ksmg.network.ntp             string            NTP servers, comma separated
//	ksmg.admin.password          password          initial admin password; empty
//	                                               means the console wizard asks
//	ksmg.admin.password_hash     password          or its crypt(3) hash
//	ksmg.ssh.enabled             boolean  False    enable SSH
//	ksmg.ssh.authorized_key      string            OpenSSH public key line
//	ksmg.ssh.root_login          boolean  False    the key may log in as root too
//	ksmg.cluster.role            string   control  "control" or "secondary"
//	ksmg.cluster.control_address string            Control node address (secondary)
//	ksmg.cluster.join_token      password          join token (secondary)
//	ksmg.eula.accepted           boolean  False    EULA accepted by the deployer
//	ksmg.ksn.consent             boolean  False    join the KSN reputation cloud
//	ksmg.language                string   en       "en", "cs" or "ru"
//	ksmg.timezone                string   UTC      IANA time zone
//
// No property ships a password: Write refuses a non-empty password default.
// KSN participation is off until explicitly turned on (data contract).
//
// Inspect reads any OVA back: member order, manifest digests, the OVF parsed
// with govmomi's ovf package and mapped to a vSphere ConfigSpec, and every
// VMDK walked and decompressed.
//
// The archive is written with archive/tar headers (ustar, fixed mtime 0,
// uid/gid 0, no user names) and hand-assembled around them so the manifest,
// which precedes the disk, can be filled in after the disk was hashed on its
// way into the archive; no library writes an OVA in that order from a stream.
package ova
