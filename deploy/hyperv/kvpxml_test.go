package hyperv

import (
	"encoding/xml"
	"testing"
)

func TestKVPItemXML(t *testing.T) {
	got := kvpItemXML("ksmg.admin.password", `a<b>&"c'`)
	want := `<INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem">` +
		`<PROPERTY NAME="Data" TYPE="string"><VALUE>a&lt;b&gt;&amp;&#34;c&#39;</VALUE></PROPERTY>` +
		`<PROPERTY NAME="Name" TYPE="string"><VALUE>ksmg.admin.password</VALUE></PROPERTY>` +
		`<PROPERTY NAME="Source" TYPE="uint16"><VALUE>0</VALUE></PROPERTY></INSTANCE>`
	if got != want {
		t.Errorf("kvpItemXML =\n%s\nwant\n%s", got, want)
	}
	// And it parses back to the same value.
	var inst struct {
		Props []struct {
			Name  string `xml:"NAME,attr"`
			Value string `xml:"VALUE"`
		} `xml:"PROPERTY"`
	}
	if err := xml.Unmarshal([]byte(got), &inst); err != nil || inst.Props[0].Value != `a<b>&"c'` {
		t.Errorf("round trip: %+v, %v", inst, err)
	}
}

// guestXML is a guest-to-host item as Hyper-V reports it (Source 2, with
// the empty inherited properties the host adds).
func guestXML(key, value string) string {
	return `<INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem"><PROPERTY NAME="Caption" PROPAGATED="true" TYPE="string"></PROPERTY>` +
		`<PROPERTY NAME="Data" TYPE="string"><VALUE>` + value + `</VALUE></PROPERTY>` +
		`<PROPERTY NAME="Description" PROPAGATED="true" TYPE="string"></PROPERTY>` +
		`<PROPERTY NAME="Name" TYPE="string"><VALUE>` + key + `</VALUE></PROPERTY>` +
		`<PROPERTY NAME="Source" TYPE="uint16"><VALUE>2</VALUE></PROPERTY></INSTANCE>`
}

func TestGuestItem(t *testing.T) {
	items := []string{guestXML("ksmg.other", "x"), guestXML("ksmg.firstboot", "done")}
	tests := []struct {
		name  string
		items []string
		key   string
		val   string
		found bool
		err   bool
	}{
		{"found", items, "ksmg.firstboot", "done", true, false},
		{"absent", items[:1], "ksmg.firstboot", "", false, false},
		{"none", nil, "ksmg.firstboot", "", false, false},
		{"bad xml", []string{"<INSTANCE"}, "ksmg.firstboot", "", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, ok, err := guestItem(tc.items, tc.key)
			if v != tc.val || ok != tc.found || (err != nil) != tc.err {
				t.Errorf("guestItem = %q, %v, %v; want %q, %v, error %v", v, ok, err, tc.val, tc.found, tc.err)
			}
		})
	}
}
