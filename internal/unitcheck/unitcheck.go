// Package unitcheck rates systemd unit files the way an auditor does:
// `systemd-analyze security --offline=yes` (the host's systemd), for tests
// that hold every unit we ship to an exposure ceiling.
package unitcheck

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d)`)

// Exposure rates unitFile and checks it against max with systemd-analyze's
// own --threshold. systemd 252 compares the threshold with the exposure
// ×10 (the printed 1.5 is 15 internally), so a threshold of 15 fails above
// 1.5. It returns the printed level and the tool's output; err is non-nil
// when the unit is over max or the tool failed.
func Exposure(unitFile string, max float64) (float64, string, error) {
	threshold := strconv.Itoa(int(max*10 + 0.5))
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", "--threshold="+threshold, unitFile).CombinedOutput()
	m := exposureRE.FindStringSubmatch(string(out))
	if m == nil {
		return 0, string(out), fmt.Errorf("systemd-analyze security %s printed no exposure level: %w\n%s", unitFile, err, out)
	}
	level, perr := strconv.ParseFloat(m[1], 64)
	if perr != nil {
		return 0, string(out), perr
	}
	if err != nil {
		return level, string(out), fmt.Errorf("systemd-analyze security --threshold=%s: %w", threshold, err)
	}
	return level, string(out), nil
}
