package kvp

import (
	"encoding/xml"
	"testing"

	"github.com/ksmg-appliance/ksmg/deploy/hyperv/kvp/kvptest"
)

func TestKVPItemXML(t *testing.T) {
	t.Parallel()
	got := ItemXML("ksmg.admin.password", `a<b>&"c'`)
	want := `<INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem">` +
		`<PROPERTY NAME="Data" TYPE="string"><VALUE>a&lt;b&gt;&amp;&#34;c&#39;</VALUE></PROPERTY>` +
		`<PROPERTY NAME="Name" TYPE="string"><VALUE>ksmg.admin.password</VALUE></PROPERTY>` +
		`<PROPERTY NAME="Source" TYPE="uint16"><VALUE>0</VALUE></PROPERTY></INSTANCE>`
	if got != want {
		t.Errorf("ItemXML =\n%s\nwant\n%s", got, want)
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

func TestGuestItem(t *testing.T) {
	t.Parallel()
	items := []string{kvptest.GuestXML("ksmg.other", "x"), kvptest.GuestXML("ksmg.firstboot", "done")}
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
			t.Parallel()
			v, ok, err := GuestItem(tc.items, tc.key)
			if v != tc.val || ok != tc.found || (err != nil) != tc.err {
				t.Errorf("GuestItem = %q, %v, %v; want %q, %v, error %v", v, ok, err, tc.val, tc.found, tc.err)
			}
		})
	}
}
