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
