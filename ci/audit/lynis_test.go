package main

import (
	"strings"
	"testing"
)

// TestCustomProfileSkipsHaveReasons: the appliance's Lynis profile skips
// only what it names, and every skip-test line comes after a comment that
// says why (a bare skip would silently raise the index).
func TestCustomProfileSkipsHaveReasons(t *testing.T) {
	if got := strings.Join(skippedTests(customProfile), ","); got != "USB-3000" {
		t.Errorf("custom.prf skips %q; a new skip needs its reason in custom.prf and images/HARDENING.md (then update this test)", got)
	}
	lines := strings.Split(string(customProfile), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "skip-test=") {
			continue
		}
		if i == 0 || !strings.HasPrefix(lines[i-1], "# ") {
			t.Errorf("line %d %q: no reason in a comment just above it", i+1, l)
		}
	}
	if got := skippedTests([]byte("# x\nskip-test=A-1\n  skip-test=B-2\nfoo=1\n")); strings.Join(got, ",") != "A-1,B-2" {
		t.Errorf("skippedTests = %q", got)
	}
}
