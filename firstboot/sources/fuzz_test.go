package sources

import (
	"bytes"
	"os"
	"reflect"
	"testing"
)

func FuzzParseOVFEnv(f *testing.F) {
	doc, err := os.ReadFile("testdata/ovf-env.xml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add([]byte(`<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"/>`))
	f.Add([]byte(`<Environment xmlns:oe="http://schemas.dmtf.org/ovf/environment/1"><PropertySection><Property oe:key="k" oe:value="v"/></PropertySection></Environment>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		kv, err := ParseOVFEnv(doc)
		if err != nil {
			return
		}
		for k := range kv {
			if k == "" {
				t.Fatal("empty key accepted")
			}
		}
	})
}

func FuzzParseKVPPool(f *testing.F) {
	seed, _ := EncodeKVPPool([]KVPRecord{{"ksmg.hostname", "gw1"}, {"ksmg.admin.password", "Correct-Horse-9"}})
	f.Add(seed)
	f.Add([]byte{})
	f.Add(make([]byte, KVPRecordSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkKVP(t, data)
		// Random lengths are rarely whole records: also try the input
		// padded to one, so record decoding gets exercised.
		if r := len(data) % KVPRecordSize; r != 0 {
			checkKVP(t, append(append([]byte{}, data...), make([]byte, KVPRecordSize-r)...))
		}
	})
}

func checkKVP(t *testing.T, data []byte) {
	{
		recs, err := ParseKVPPool(data)
		if err != nil {
			if len(data)%KVPRecordSize == 0 {
				t.Fatalf("whole records rejected: %v", err)
			}
			return
		}
		// Whatever parses must re-encode and parse to the same records.
		enc, err := EncodeKVPPool(recs)
		if err != nil {
			t.Fatalf("parsed records do not re-encode: %v", err)
		}
		again, err := ParseKVPPool(enc)
		if err != nil || !reflect.DeepEqual(again, recs) {
			t.Fatalf("round trip changed records: %v", err)
		}
		if len(enc) > len(data) || (len(recs) > 0 && bytes.Equal(enc, nil)) {
			t.Fatal("encoding grew")
		}
	}
}

func FuzzParseSeed(f *testing.F) {
	f.Add([]byte("ksmg:\n  hostname: gw1\n  ntp: [a, b]\n"))
	f.Add([]byte("ksmg.hostname: gw1\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		_, _ = ParseSeed(doc) // must not panic or hang
	})
}
