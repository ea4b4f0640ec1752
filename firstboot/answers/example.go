package answers

import (
	"crypto/rand"
	"fmt"
)

// Unattended returns a complete answer set for a DHCP Control node with a
// fresh random admin password (there is no default password), for boot
// tests and scripted deployments: pass it as SMBIOS credentials, OVF
// properties or KVP items. The password is returned separately as well,
// so the caller can log in; never log it.
func Unattended(hostname string) (kv map[string]string, password string, err error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return nil, "", fmt.Errorf("random password: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	// Fixed class characters keep the strength rule satisfied whatever
	// the random part drew.
	password = "Ks-" + string(b) + "9a"
	kv = map[string]string{
		"ksmg.eula.accepted":  "true",
		"ksmg.admin.password": password,
		"ksmg.hostname":       hostname,
		"ksmg.network.mode":   ModeDHCP,
		"ksmg.timezone":       "UTC",
		"ksmg.cluster.role":   RoleControl,
	}
	a, errs := FromKeys(kv, "eth0")
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("unattended example: %v", errs)
	}
	if err := a.Validate(); err != nil {
		return nil, "", fmt.Errorf("unattended example incomplete: %w", err)
	}
	return kv, password, nil
}
