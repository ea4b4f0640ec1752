package smtpd

import (
	"net/netip"
	"strings"
)

// splitAddr returns the lower-cased address and its domain.
func splitAddr(addr string) (string, string) {
	a := strings.ToLower(addr)
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return a, a[i+1:]
	}
	return a, ""
}

// matchAddr: entries are user@domain (exact), @domain or domain.
func matchAddr(list []string, addr string) bool {
	a, dom := splitAddr(addr)
	for _, e := range list {
		switch {
		case strings.HasPrefix(e, "@"):
			if dom == e[1:] {
				return true
			}
		case strings.Contains(e, "@"):
			if a == e {
				return true
			}
		default:
			if dom == e {
				return true
			}
		}
	}
	return false
}

func matchNet(list []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
