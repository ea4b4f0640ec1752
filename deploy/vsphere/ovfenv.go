package vsphere

import (
	"encoding/xml"
	"strings"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/ova"
)

// OVFEnv renders the OVF environment (DSP0243) vCenter would hand the
// guest, for a standalone ESXi host that hands none: every declared
// property with the node's value or its default, as `ovftool
// --X:injectOvfEnv` writes it to guestinfo.ovfEnv. Written by hand rather
// than with govmomi's ovf.Env.MarshalManual because that one does not
// escape values (a password with & or " would break the document) and
// encoding/xml cannot emit the oe: prefixed attributes guests expect.
func OVFEnv(vmID string, about types.AboutInfo, declared []ova.VMProperty, values map[string]string) string {
	var b strings.Builder
	esc := func(s string) string {
		var e strings.Builder
		_ = xml.EscapeText(&e, []byte(s)) // escapes quotes, <, >, &, and \t \n \r
		return e.String()
	}
	b.WriteString(xml.Header)
	b.WriteString(`<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"` +
		` xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:ve="http://www.vmware.com/schema/ovfenv" oe:id="" ve:esxId="` + esc(vmID) + "\">\n")
	b.WriteString("  <PlatformSection>\n    <Kind>" + esc(about.Name) + "</Kind>\n    <Version>" + esc(about.Version) +
		"</Version>\n    <Vendor>" + esc(about.Vendor) + "</Vendor>\n    <Locale>en</Locale>\n  </PlatformSection>\n")
	b.WriteString("  <PropertySection>\n")
	for _, p := range declared {
		v, ok := values[p.Key]
		if !ok {
			v = p.Default
		}
		b.WriteString(`    <Property oe:key="` + esc(p.Key) + `" oe:value="` + esc(v) + "\"/>\n")
	}
	b.WriteString("  </PropertySection>\n</Environment>\n")
	return b.String()
}
