package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/images/boottest"
	"github.com/ksmg-appliance/ksmg/provisioner/harden"
)

// auditLabel is the FAT label of the disk that carries Lynis in and the
// results out.
const auditLabel = "KSMGAUDIT"

// auditScript runs as root inside the booted appliance (boottest.Probe):
// it mounts the audit disk, runs Lynis from a copy and writes the report
// and the guest's mount table back to the disk.
const auditScript = `set -u
d=/run/ksmg-audit
w=/run/ksmg-audit-work
udevadm wait --timeout=120 /dev/disk/by-label/` + auditLabel + ` || exit 1
mkdir -p "$d" && mount -t vfat -o nosuid,nodev /dev/disk/by-label/` + auditLabel + ` "$d" || exit 1
# Lynis refuses files that are writable by others or executable data.
mkdir -p "$w" && cp -R "$d/lynis" "$w/" && chown -R 0:0 "$w" &&
	find "$w" -type d -exec chmod 0755 {} + && find "$w" -type f -exec chmod 0644 {} + && chmod 0755 "$w/lynis/lynis"
# The appliance's mount table, without the audit disk itself.
grep -v " $d " /proc/self/mounts > "$d/results/mounts.txt"
cd "$w/lynis" || exit 1
# The output also goes to the console (the serial log shows the progress).
sh ./lynis audit system --quick --no-colors --logfile "$w/lynis.log" --report-file "$w/report.dat" 2>&1 | tee "$w/output.txt"
echo "lynis finished" >> "$w/output.txt"
cp "$w/report.dat" "$w/lynis.log" "$w/output.txt" "$d/results/"
cd /
sync
umount "$d"
echo "KSMG-AUDIT done"
`

// customProfile is the appliance's Lynis profile (custom.prf): the tests it
// skips as not applicable, each with its reason.
//
//go:embed custom.prf
var customProfile []byte

// skippedTests lists a profile's skip-test entries.
func skippedTests(prf []byte) []string {
	var skips []string
	for _, line := range strings.Split(string(prf), "\n") {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "skip-test="); ok {
			skips = append(skips, id)
		}
	}
	return skips
}

type lynisReport struct {
	Version     string
	Index       int
	Warnings    []string
	Suggestions []string
}

func (l *lynisReport) print(w io.Writer) {
	fmt.Fprintf(w, "Lynis %s: hardening index %d, %d warning(s), %d suggestion(s); the appliance profile skips %s as not applicable (ci/audit/custom.prf says why)\n",
		l.Version, l.Index, len(l.Warnings), len(l.Suggestions), strings.Join(skippedTests(customProfile), ", "))
	for _, s := range l.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", s)
	}
	for _, s := range l.Suggestions {
		fmt.Fprintf(w, "  suggestion: %s\n", s)
	}
}

type bootResult struct {
	Lynis   lynisReport
	Runtime map[string]string // harden.RuntimeProbe's values
	Mounts  []byte            // the guest's /proc/self/mounts
	Files   []string          // report, log, output, serial (kept with -keep)
}

// runLynis boots the image with an unattended first boot that enables SSH
// and the audit disk attached, and reads the results back from the disk.
func runLynis(ctx context.Context, image, lynisDeb, work string) (*bootResult, error) {
	stage := filepath.Join(work, "audit-disk")
	deb := filepath.Join(work, "lynis-deb")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", lynisDeb, deb).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unpack %s: %w: %s", lynisDeb, err, out)
	}
	// Lynis looks for include/, plugins/, db/ and its profile next to the
	// script (the directory it runs from) before the installed places.
	ly := filepath.Join(stage, "lynis")
	for _, c := range [][2]string{
		{"usr/sbin/lynis", "lynis"},
		{"usr/share/lynis/include", "include"},
		{"etc/lynis/plugins", "plugins"},
		{"usr/share/lynis/db", "db"},
		{"etc/lynis/default.prf", "default.prf"},
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ly, c[1])), 0o755); err != nil {
			return nil, err
		}
		if out, err := exec.CommandContext(ctx, "cp", "-R", filepath.Join(deb, c[0]), filepath.Join(ly, c[1])).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("lynis package lacks %s: %w: %s", c[0], err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(ly, "custom.prf"), customProfile, 0o644); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(stage, "results"), 0o755); err != nil {
		return nil, err
	}
	disk := filepath.Join(work, "audit.img")
	for _, c := range [][]string{
		{"mkfs.fat", "-C", "-n", auditLabel, disk, "65536"},
		{"mcopy", "-s", "-i", disk, filepath.Join(stage, "lynis"), filepath.Join(stage, "results"), "::/"},
	} {
		if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("audit disk: %s: %w: %s", c[0], err, out)
		}
	}

	creds, _, err := answers.Unattended("ksmg-audit")
	if err != nil {
		return nil, err
	}
	key, err := sshKey(ctx, work)
	if err != nil {
		return nil, err
	}
	creds["ksmg.ssh.enabled"] = "true"
	creds["ksmg.ssh.authorized_key"] = key
	// The hardening in force is printed first (harden.RuntimeProbe), then
	// Lynis runs.
	for k, v := range boottest.Probe("audit-lynis", harden.RuntimeProbe+auditScript, 120*time.Minute) {
		creds[k] = v
	}

	serialPath := filepath.Join(work, "serial.log")
	f, err := os.Create(serialPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	serial := &stampWriter{w: f, start: time.Now()}
	res := &bootResult{Files: []string{serialPath}}
	start := time.Now()
	fmt.Println("booting (QEMU TCG; Lynis runs before the console status line) ...")
	br, err := boottest.Run(ctx, boottest.Options{
		Disk: image, Format: "raw", Credentials: creds, Serial: serial, SSH: true,
		Timeout: 150 * time.Minute,
		ExtraArgs: []string{
			"-drive", "if=none,id=audit,format=raw,file=" + strings.ReplaceAll(disk, ",", ",,"),
			"-device", "virtio-blk-pci,drive=audit",
		},
	})
	if err != nil {
		return res, fmt.Errorf("boot: %w", err)
	}
	fmt.Printf("boot: %s in %s (status: %s)\n", br.SSHBanner, time.Since(start).Round(time.Second), br.StatusLine)
	if log, err := os.ReadFile(serialPath); err == nil {
		res.Runtime = boottest.ProbeValues(string(log))
	}
	out := filepath.Join(work, "results")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return res, err
	}
	if b, err := exec.CommandContext(ctx, "mcopy", "-n", "-s", "-i", disk, "::/results/", out).CombinedOutput(); err != nil {
		return res, fmt.Errorf("read the audit disk back: %w: %s", err, b)
	}
	dir := filepath.Join(out, "results")
	if _, err := os.Stat(dir); err != nil {
		dir = out
	}
	for _, f := range []string{"report.dat", "lynis.log", "output.txt"} {
		res.Files = append(res.Files, filepath.Join(dir, f))
	}
	if res.Mounts, err = os.ReadFile(filepath.Join(dir, "mounts.txt")); err != nil {
		return res, fmt.Errorf("the audit unit wrote no mount table (see the serial log): %w", err)
	}
	report, err := os.ReadFile(filepath.Join(dir, "report.dat"))
	if err != nil {
		return res, fmt.Errorf("no Lynis report (see the serial log): %w", err)
	}
	res.Lynis, err = parseLynis(report)
	return res, err
}

// parseLynis reads Lynis' report file (key=value lines; lists as key[]=).
func parseLynis(data []byte) (lynisReport, error) {
	var r lynisReport
	r.Index = -1
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "lynis_version":
			r.Version = v
		case "hardening_index":
			n, err := strconv.Atoi(v)
			if err != nil {
				return r, fmt.Errorf("lynis report: hardening_index=%q", v)
			}
			r.Index = n
		case "warning[]":
			r.Warnings = append(r.Warnings, lynisItem(v))
		case "suggestion[]":
			r.Suggestions = append(r.Suggestions, lynisItem(v))
		}
	}
	if r.Index < 0 {
		return r, fmt.Errorf("lynis report has no hardening_index")
	}
	return r, sc.Err()
}

// lynisItem turns "TEST-ID|text|details|solution|" into "TEST-ID text (details)".
func lynisItem(v string) string {
	f := strings.Split(v, "|")
	s := strings.Join(f[:min(2, len(f))], " ")
	if len(f) > 2 && f[2] != "" && f[2] != "-" {
		s += " (" + f[2] + ")"
	}
	return s
}

// stampWriter prefixes each serial line with the seconds since power-on
// (host clock), so a slow audit shows where its time went.
type stampWriter struct {
	w     io.Writer
	start time.Time
	mid   bool
}

func (s *stampWriter) Write(p []byte) (int, error) {
	var b bytes.Buffer
	for _, c := range p {
		if !s.mid {
			fmt.Fprintf(&b, "[host %7.1fs] ", time.Since(s.start).Seconds())
			s.mid = true
		}
		b.WriteByte(c)
		if c == '\n' {
			s.mid = false
		}
	}
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func sshKey(ctx context.Context, work string) (string, error) {
	key := filepath.Join(work, "id_ed25519")
	if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ksmg-audit", "-f", key).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ssh-keygen: %w: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	return strings.TrimSpace(string(pub)), err
}
