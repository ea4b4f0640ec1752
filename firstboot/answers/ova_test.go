package answers

import (
	"testing"

	"github.com/ksmg-appliance/ksmg/ova"
)

// TestOVAPropertiesKnown: every vApp property the OVA offers must land in
// an answer, and password properties must be treated as secrets.
func TestOVAPropertiesKnown(t *testing.T) {
	props := ova.Properties()
	if len(props) == 0 {
		t.Fatal("ova.Properties is empty")
	}
	for _, p := range props {
		k, ok := lookup(p.Key)
		if !ok {
			t.Errorf("OVA property %q has no first-boot key", p.Key)
			continue
		}
		if p.Password && !k.Secret {
			t.Errorf("OVA password property %q is not a secret here", p.Key)
		}
	}
	// And the other way: a vSphere deploy can set every answer unattended
	// (only the NIC selector is moot, the OVA has one NIC).
	offered := map[string]bool{}
	for _, p := range props {
		offered[p.Key] = true
	}
	for _, k := range Keys {
		if !offered[k.Name] && k.Name != "ksmg.network.interface" {
			t.Errorf("first-boot key %q is not an OVA property", k.Name)
		}
	}
	// The deploy wizard's defaults alone are valid but incomplete: no
	// password and no EULA acceptance, so the console wizard opens.
	kv := map[string]string{}
	for _, p := range props {
		kv[p.Key] = p.Default
	}
	a, errs := FromKeys(kv, "eth0")
	if len(errs) != 0 {
		t.Fatalf("OVA defaults rejected: %v", errs)
	}
	if a.Validate() == nil || a.KSN || a.EULAAccepted {
		t.Fatalf("OVA defaults must not complete setup nor consent: %+v", a)
	}
}
