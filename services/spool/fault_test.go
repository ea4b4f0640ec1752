package spool

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ksmg-appliance/ksmg/services/internal/tmpfs"
)

// faultWriter fails with err once more than after bytes went through it.
type faultWriter struct {
	w     io.Writer
	after int
	err   error
	short bool // report a short write instead of an error
}

func (f *faultWriter) Write(p []byte) (int, error) {
	if f.after >= len(p) {
		f.after -= len(p)
		return f.w.Write(p)
	}
	n, _ := f.w.Write(p[:f.after])
	f.after = 0
	if f.short {
		return n, nil
	}
	return n, f.err
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"tmp", "msg", "state"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		if len(ents) != 0 {
			t.Errorf("%s/ holds %d files after a failed write (a torn file left behind)", sub, len(ents))
		}
	}
}

// Every failure of the spool's storage, at any point of the file, is an
// ErrStorage (the SMTP server answers it 452 4.3.1, RFC 5321 §4.2.5 /
// RFC 3463 X.3.1, not a permanent 554), names no more than the spool's own
// path, and leaves no file; the next write succeeds.
func TestStorageFaults(t *testing.T) {
	t.Parallel()
	body := "Subject: x\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 20000) // 360 KB
	for _, tc := range []struct {
		name  string
		after int
		err   error
		short bool
	}{
		{"EIO at the first byte", 0, syscall.EIO, false},
		{"EIO in the body", 200 << 10, syscall.EIO, false},
		{"EIO in the checksum", -30, syscall.EIO, false}, // counted from the end
		{"ENOSPC in the body", 100 << 10, syscall.ENOSPC, false},
		{"short write", 70 << 10, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.after < 0 {
				tc.after += fileSize(t, body)
			}
			dir := t.TempDir()
			armed := true
			s, _, _, err := Open(dir, WrapFileWriter(func(w io.Writer) io.Writer {
				if !armed {
					return w
				}
				return &faultWriter{w: w, after: tc.after, err: tc.err, short: tc.short}
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Write(&Envelope{From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(body))
			if !errors.Is(err, ErrStorage) {
				t.Fatalf("Write = %v, want an ErrStorage", err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("Write = %v, want it to wrap %v", err, tc.err)
			}
			assertEmpty(t, dir)
			armed = false
			write(t, s, "a@x.test", []string{"b@y.test"}, body)
		})
	}
}

// fileSize is the size of a queue file holding body.
func fileSize(t *testing.T, body string) int {
	t.Helper()
	s, _, _, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := write(t, s, "a@x.test", []string{"b@y.test"}, body)
	fi, err := os.Stat(s.Path(id))
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

// A failing client (the body reader) is not a storage failure.
func TestReaderErrorIsNotStorage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _, _, _ := Open(dir)
	defer s.Close()
	_, err := s.Write(&Envelope{From: "a@x", To: []string{"b@y"}}, io.MultiReader(strings.NewReader("partial"), errReader{}))
	if err == nil || errors.Is(err, ErrStorage) {
		t.Fatalf("Write = %v, want the reader's error, not ErrStorage", err)
	}
}

// A real full file system: a tmpfs of 2 MiB that the test mounts and fills.
// The write fails as ErrStorage (ENOSPC) without leaving the torn file, and
// succeeds again once space is freed. Needs root for mount (CI runs as root).
func TestFullTmpfs(t *testing.T) {
	t.Parallel()
	mnt := tmpfs.Mount(t, "", "2m")
	dir := filepath.Join(mnt, "queue")
	s, _, _, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	filler := filepath.Join(mnt, "filler")
	fill, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fill.Write(make([]byte, 1700<<10)); err != nil { // leaves ~300 KiB
		t.Fatal(err)
	}
	fill.Close()
	body := strings.Repeat("x", 1<<20)
	_, err = s.Write(&Envelope{From: "a@x.test", To: []string{"b@y.test"}}, strings.NewReader(body))
	if !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write on a full tmpfs = %v, want ErrStorage wrapping ENOSPC", err)
	}
	assertEmpty(t, dir)
	os.Remove(filler)
	write(t, s, "a@x.test", []string{"b@y.test"}, body)
}
