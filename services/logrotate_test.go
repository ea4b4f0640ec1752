package services

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// stream is one log stream and its cap from the data contract
// (/work/shared/product/data-layout.md), in bytes (GB = 10^9).
type stream struct {
	live  string // path under /var/log
	block string // logrotate block pattern that covers it
	cap   int64
}

var streams = []stream{
	{"/var/log/ksmg-messages", "/var/log/ksmg-messages", 23_000_000_000},
	{"/var/log/ksmg-important", "/var/log/ksmg-important", 500_000_000},
	{"/var/log/ksmg-traces/smtp.log", "/var/log/ksmg-traces/*.log", 23_000_000_000},
	{"/var/log/ksmg-traces/relay.log", "/var/log/ksmg-traces/*.log", 23_000_000_000},
	{"/var/log/kaspersky/ksmg-gatewayd.log", "/var/log/kaspersky/*.log", 150_000_000},
	{"/var/log/kaspersky/ksmg-relay.log", "/var/log/kaspersky/*.log", 150_000_000},
	{"/var/log/kaspersky/extra/smtp-session.log", "/var/log/kaspersky/extra/*.log", 400_000_000},
}

var sizeRE = regexp.MustCompile(`(?m)^(\S+) \{\n\tsize (\d+)([kMG]?)\n`)

// rotationSizes reads each block's `size` from the shipped config.
func rotationSizes(t *testing.T, conf string) map[string]int64 {
	t.Helper()
	sizes := map[string]int64{}
	for _, m := range sizeRE.FindAllStringSubmatch(conf, -1) {
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		n <<= map[string]int{"": 0, "k": 10, "M": 20, "G": 30}[m[3]]
		sizes[m[1]] = n
	}
	return sizes
}

// TestLogrotateCaps runs the real logrotate on the shipped configuration,
// pointed at a temporary /var/log, for several rounds. Live files are made
// just over the rotation size with truncate (sparse: gigabytes cost no disk)
// and rotation is a rename, so the real caps are used, unscaled. Each round's
// file gets a distinct size, which tells the generations apart.
//
// Rewritten for the test only: paths (temporary root), the owner in `create`
// (kluser does not exist on the build host; the test's own user instead), the
// ksmg-logcap path, and `systemctl`: no systemd runs here, so a stand-in on
// PATH records the signal requests instead of sending them.
//
//nolint:gocyclo // one scenario of 30 rounds whose checks read in the order they happen
func TestLogrotateCaps(t *testing.T) {
	t.Parallel()
	raw, err := fs.ReadFile(Files(), "logrotate.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	sizes := rotationSizes(t, conf)
	for _, s := range streams {
		if sizes[s.block] <= 0 {
			t.Fatalf("logrotate.conf: no `size` for block %s", s.block)
		}
	}

	root := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	logcap, err := filepath.Abs("files/ksmg-logcap")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ old, new string }{
		{"/var/log/", root + "/var/log/"},
		{"create 0640 kluser kluser", fmt.Sprintf("create 0640 %s %s", me.Username, grp.Name)},
		{"/usr/libexec/ksmg/ksmg-logcap", logcap},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("logrotate.conf no longer contains %q; update this test", r.old)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	confFile := filepath.Join(root, "logrotate.conf")
	mustWrite(t, confFile, conf, 0o644)

	fake := filepath.Join(root, "bin")
	calls := filepath.Join(root, "systemctl.calls")
	mustWrite(t, filepath.Join(fake, "systemctl"),
		"#!/bin/sh\necho \"$*\" >> '"+calls+"'\n", 0o755)
	env := []string{"PATH=" + fake + ":" + os.Getenv("PATH")}

	for _, d := range []string{"ksmg-traces", "kaspersky/extra"} {
		if err := os.MkdirAll(filepath.Join(root, "var/log", d), 0o750); err != nil {
			t.Fatal(err)
		}
	}

	// gen[path] lists the size written in each rotated generation, newest first.
	gens := map[string][]int64{}
	const rounds = 30
	wantSignals := 0
	for round := 1; round <= rounds; round++ {
		rotatedBlocks := map[string]bool{}
		for _, s := range streams {
			size := sizes[s.block]
			var n int64
			switch {
			case round%7 == 0:
				n = size - int64(round) // under the size: must not rotate
			case round >= 22 && round <= 24:
				n = 3*size + int64(round) // a burst: more than an hour's room
			default:
				n = size + int64(round)
			}
			p := filepath.Join(root, s.live)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o640)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(n); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if n > size {
				gens[s.live] = append([]int64{n}, gens[s.live]...)
				rotatedBlocks[s.block] = true
			}
		}
		wantSignals += len(rotatedBlocks)
		// Between runs, with at most `size` written in the hour, the live
		// file plus the copies is within the cap too (bursts excepted: they
		// are over the cap until the next run, by at most the burst).
		if round < 22 || round > 24 {
			for _, s := range streams {
				p := filepath.Join(root, s.live)
				var total int64
				for _, n := range rotatedSizes(t, p) {
					total += n
				}
				if fi, err := os.Stat(p); err != nil || total+fi.Size() > s.cap {
					t.Fatalf("round %d, before logrotate: %s: %d bytes rotated plus the live file exceed cap %d (%v)", round, s.live, total, s.cap, err)
				}
			}
		}

		out, err := run(t, env, "logrotate", "--state", filepath.Join(root, "state"), confFile)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("round %d: logrotate: %v\n%s", round, err, out)
		}

		for _, s := range streams {
			size := sizes[s.block]
			p := filepath.Join(root, s.live)
			live, err := os.Stat(p)
			if err != nil {
				t.Fatalf("round %d: %s: %v", round, s.live, err)
			}
			if live.Mode().Perm() != 0o640 {
				t.Errorf("round %d: %s mode %v, want 0640", round, s.live, live.Mode())
			}
			rotated := rotatedSizes(t, p)
			var total int64
			for _, n := range rotated {
				total += n
			}
			if total+live.Size() > s.cap {
				t.Fatalf("round %d: %s: %d bytes in the stream, cap %d", round, s.live, total+live.Size(), s.cap)
			}
			// Room for the live file to reach the rotation size and grow for
			// another hour (up to one more rotation size) stays free.
			if total+2*size > s.cap {
				t.Fatalf("round %d: %s: %d bytes rotated leave less than 2 x %d under cap %d", round, s.live, total, size, s.cap)
			}
			// The kept copies are the newest generations, in order: the
			// oldest are the ones deleted.
			want := gens[s.live]
			if len(want) > len(rotated) {
				want = want[:len(rotated)]
			}
			if len(rotated) == 0 || fmt.Sprint(rotated) != fmt.Sprint(want) {
				t.Fatalf("round %d: %s: rotated copies %v, want the newest generations %v", round, s.live, rotated, gens[s.live])
			}
			if round%7 == 0 && live.Size() == 0 {
				t.Errorf("round %d: %s under its size was rotated", round, s.live)
			}
			if round == rounds {
				t.Logf("%s: %d copies, %d bytes (cap %d, size %d)", s.live, len(rotated), total, s.cap, size)
			}
		}
	}

	data, _ := os.ReadFile(calls)
	var kills int
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		switch line {
		case "-q is-active ksmg-gatewayd.service":
		case "kill --kill-whom=main --signal=SIGUSR1 ksmg-gatewayd.service":
			kills++
		default:
			t.Errorf("unexpected systemctl call %q", line)
		}
	}
	if kills != wantSignals {
		t.Errorf("ksmg-gatewayd was sent SIGUSR1 %d times, want %d (once per rotated block per run)", kills, wantSignals)
	}
}

// rotatedSizes returns the sizes of LOG.1, LOG.2, ..., checking that the
// numbering has no gaps and that the copies are 0640.
func rotatedSizes(t *testing.T, log string) []int64 {
	t.Helper()
	matches, err := filepath.Glob(log + ".*")
	if err != nil {
		t.Fatal(err)
	}
	idx := []int{}
	for _, m := range matches {
		i, err := strconv.Atoi(strings.TrimPrefix(m, log+"."))
		if err != nil {
			t.Fatalf("unexpected file %s next to %s", m, log)
		}
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var sizes []int64
	for k, i := range idx {
		if i != k+1 {
			t.Fatalf("%s: rotated copies %v have a gap", log, idx)
		}
		fi, err := os.Stat(fmt.Sprintf("%s.%d", log, i))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s.%d: mode %v, want 0640", log, i, fi.Mode())
		}
		sizes = append(sizes, fi.Size())
	}
	return sizes
}

// TestLogcapArguments: bad arguments are refused with a message and status 2,
// before anything is deleted.
func TestLogcapArguments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "a.log")
	for _, name := range []string{log, log + ".1", log + ".2"} {
		mustWrite(t, name, "x\n", 0o640)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"100", log}, "usage"},
		{[]string{"1GB", "0", log}, "must be byte counts"},
		{[]string{"100", "-5", log}, "must be byte counts"},
		{[]string{"10", "20", log}, "larger than CAP"},
	} {
		out, err := run(t, nil, "files/ksmg-logcap", c.args...)
		var exit interface{ ExitCode() int }
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, c.want) {
			t.Errorf("ksmg-logcap %q: %v %q, want exit 2 and %q", c.args, err, out, c.want)
		}
	}
	if got := rotatedSizes(t, log); len(got) != 2 {
		t.Errorf("a refused call deleted files: %d copies left, want 2", len(got))
	}
	// A pattern matching nothing is not an error (logrotate's missingok).
	if out, err := run(t, nil, "files/ksmg-logcap", "10", "0", filepath.Join(dir, "*.none")); err != nil {
		t.Errorf("unmatched pattern: %v %s", err, out)
	}
	// CAP 3 bytes, RESERVE 0: of the two 2-byte copies only the newer stays.
	if out, err := run(t, nil, "files/ksmg-logcap", "3", "0", filepath.Join(dir, "*.log")); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if got := rotatedSizes(t, log); len(got) != 1 {
		t.Errorf("after cap 3: %d copies left, want 1 (%s.1)", len(got), log)
	}
}
