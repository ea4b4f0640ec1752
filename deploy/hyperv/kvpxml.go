package hyperv

import (
	"encoding/xml"
	"strings"
)

// kvpItemXML is the embedded-instance text (CIM-XML, as WMI's
// GetText(WMIDTD20) writes it) of a host-to-guest Msvm_KvpExchangeDataItem
// that AddKvpItems takes. The WMI driver builds it as text rather than
// through a WMI object: the library logs property values when setting one
// fails, and these values may be secrets.
func kvpItemXML(key, value string) string {
	var b strings.Builder
	b.WriteString(`<INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem">`)
	prop := func(name, typ, v string) {
		b.WriteString(`<PROPERTY NAME="` + name + `" TYPE="` + typ + `"><VALUE>`)
		_ = xml.EscapeText(&b, []byte(v)) // a strings.Builder never fails
		b.WriteString(`</VALUE></PROPERTY>`)
	}
	prop("Data", "string", value)
	prop("Name", "string", key)
	prop("Source", "uint16", "0") // 0: host to guest
	b.WriteString(`</INSTANCE>`)
	return b.String()
}
