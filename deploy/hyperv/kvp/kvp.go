// Package kvp reads and writes the CIM-XML text of Hyper-V's
// Msvm_KvpExchangeDataItem, the form in which WMI passes KVP items
// (AddKvpItems, RemoveKvpItems, GuestExchangeItems). The Hyper-V and SCVMM
// drivers share it; it is its own package so that SCVMM does not import
// (and register) the Hyper-V driver.
package kvp

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// ItemXML is the embedded-instance text (CIM-XML, as WMI's
// GetText(WMIDTD20) writes it) of a host-to-guest Msvm_KvpExchangeDataItem
// that AddKvpItems takes. The WMI driver builds it as text rather than
// through a WMI object: the library logs property values when setting one
// fails, and these values may be secrets.
func ItemXML(key, value string) string {
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

// kvpInstance is the embedded-instance text of one Msvm_KvpExchangeDataItem
// as GuestExchangeItems holds it.
type kvpInstance struct {
	XMLName  xml.Name `xml:"INSTANCE"`
	Property []struct {
		Name  string `xml:"NAME,attr"`
		Value string `xml:"VALUE"`
	} `xml:"PROPERTY"`
}

// GuestItem finds key among the XML-embedded Msvm_KvpExchangeDataItem
// instances of a VM's GuestExchangeItems (the guest's pool 1) and returns
// its Data. Both drivers read the raw items and decode them here.
func GuestItem(items []string, key string) (string, bool, error) {
	for i, it := range items {
		var inst kvpInstance
		if err := xml.Unmarshal([]byte(it), &inst); err != nil {
			return "", false, fmt.Errorf("guest KVP item %d: not a Msvm_KvpExchangeDataItem instance: %w", i, err)
		}
		var name, data string
		for _, p := range inst.Property {
			switch p.Name {
			case "Name":
				name = p.Value
			case "Data":
				data = p.Value
			}
		}
		if name == key {
			return data, true, nil
		}
	}
	return "", false, nil
}
