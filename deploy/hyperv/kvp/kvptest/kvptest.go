// Package kvptest gives tests and fake hosts the KVP items a Hyper-V host
// reports, for the Hyper-V and SCVMM drivers' tests.
package kvptest

import (
	"encoding/xml"
	"strings"
)

// GuestXML is a guest-to-host item as Hyper-V reports it in a VM's
// GuestExchangeItems: Source 2, with the empty inherited properties the host
// adds.
func GuestXML(key, value string) string {
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
		return b.String()
	}
	return `<INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem"><PROPERTY NAME="Caption" PROPAGATED="true" TYPE="string"></PROPERTY>` +
		`<PROPERTY NAME="Data" TYPE="string"><VALUE>` + esc(value) + `</VALUE></PROPERTY>` +
		`<PROPERTY NAME="Description" PROPAGATED="true" TYPE="string"></PROPERTY>` +
		`<PROPERTY NAME="Name" TYPE="string"><VALUE>` + esc(key) + `</VALUE></PROPERTY>` +
		`<PROPERTY NAME="Source" TYPE="uint16"><VALUE>2</VALUE></PROPERTY></INSTANCE>`
}
