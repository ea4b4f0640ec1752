package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func write(t *testing.T, s *Spool, from string, to []string, body string) string {
	t.Helper()
	env := &Envelope{From: from, To: to, ClientIP: "192.0.2.1"}
	n, err := s.Write(env, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(body)) {
		t.Fatalf("size %d, want %d", n, len(body))
	}
	return env.ID
}

func TestWriteOpenRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, msgs, rep, err := Open(dir)
	if err != nil || len(msgs) != 0 || len(rep.Corrupt) != 0 {
		t.Fatalf("fresh open: %v %v %+v", err, msgs, rep)
	}
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := &Envelope{From: "a@x.test", To: []string{"b@y.test", fmt.Sprintf("c%d@y.test", i)}}
			if _, err := s.Write(env, strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i))); err != nil {
				t.Error(err)
			}
			ids[i] = env.ID
		}()
	}
	wg.Wait()
	st := NewState(&Envelope{To: []string{"b@y.test", "c3@y.test"}})
	st.Rcpts[0].Done = true
	st.Attempts = 2
	if err := s.SaveState(ids[3], &st); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2, msgs, rep, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(msgs) != 20 || len(rep.Corrupt) != 0 {
		t.Fatalf("reopen: %d messages, report %+v", len(msgs), rep)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.Env.ID] {
			t.Fatalf("duplicate id %s", m.Env.ID)
		}
		seen[m.Env.ID] = true
		b, err := s2.Open(m.Env.ID)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(b)
		b.Close()
		if int64(len(data)) != m.Size || !bytes.HasPrefix(data, []byte("Subject: ")) {
			t.Errorf("%s: body %q size %d", m.Env.ID, data, m.Size)
		}
		if m.Env.ID == ids[3] {
			if !m.State.Rcpts[0].Done || m.State.Rcpts[1].Done || m.State.Attempts != 2 {
				t.Errorf("state not restored: %+v", m.State)
			}
		} else if m.State.Rcpts[0].Done {
			t.Errorf("%s: unexpected state %+v", m.Env.ID, m.State)
		}
	}
	// New ids stay above recovered ones.
	id := write(t, s2, "", []string{"z@y.test"}, "x")
	for _, old := range ids {
		if id <= old {
			t.Fatalf("new id %s not after %s", id, old)
		}
	}
	env, msg, err := ReadFile(s2.Path(ids[5]))
	if err != nil || env.ID != ids[5] || string(msg) != "Subject: 5\r\n\r\nbody 5\r\n" {
		t.Fatalf("ReadFile = %+v %q %v", env, msg, err)
	}
	if err := s2.Remove(ids[3]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", ids[3])); !os.IsNotExist(err) {
		t.Errorf("state survived Remove: %v", err)
	}
}

// Torn entries are set aside, reported, and never returned for delivery.
func TestRecoverTorn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, p string)
		reason string
	}{
		{"truncated body", func(t *testing.T, p string) { truncate(t, p, -60) }, "truncated"},
		{"truncated to header", func(t *testing.T, p string) { truncate(t, p, 10) }, "truncated"},
		{"empty", func(t *testing.T, p string) { truncate(t, p, 0) }, "truncated"},
		{"bad checksum", func(t *testing.T, p string) { flip(t, p, 200) }, "checksum mismatch"},
		{"bad envelope length", func(t *testing.T, p string) { flip(t, p, 9) }, ""},
		{"missing envelope", func(t *testing.T, p string) { rewriteEnvelope(t, p, []byte("{}")) }, "without recipients"},
		{"garbage envelope", func(t *testing.T, p string) { rewriteEnvelope(t, p, []byte("{not json")) }, "envelope"},
		{"bad magic", func(t *testing.T, p string) { flip(t, p, 0) }, "magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, _, _, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			good := write(t, s, "a@x.test", []string{"b@y.test"}, "Subject: good\r\n\r\nok\r\n")
			bad := write(t, s, "a@x.test", []string{"b@y.test"}, "Subject: bad\r\n\r\n"+strings.Repeat("x", 500)+"\r\n")
			s.Close()
			tc.damage(t, filepath.Join(dir, "msg", bad))
			// An uncommitted write and an orphan state are cleaned as well.
			if err := os.WriteFile(filepath.Join(dir, "tmp", "0000000000000001"), []byte("half"), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "state", "0000000000000002"), []byte("{}"), 0o640); err != nil {
				t.Fatal(err)
			}

			s2, msgs, rep, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if len(msgs) != 1 || msgs[0].Env.ID != good {
				t.Fatalf("recovered %d messages, want only %s", len(msgs), good)
			}
			if len(rep.Corrupt) != 1 || rep.Corrupt[0].Name != bad || !strings.Contains(rep.Corrupt[0].Reason, tc.reason) {
				t.Fatalf("report %+v, want %s with reason %q", rep.Corrupt, bad, tc.reason)
			}
			if _, err := os.Stat(rep.Corrupt[0].MovedTo); err != nil {
				t.Errorf("torn file not kept in corrupt/: %v", err)
			}
			if rep.TmpRemoved != 1 || rep.OrphanState != 1 {
				t.Errorf("tmp removed %d, orphan states %d; want 1, 1", rep.TmpRemoved, rep.OrphanState)
			}
		})
	}
}

func TestCorruptStateMeansRedeliver(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _, _, _ := Open(dir)
	id := write(t, s, "a@x.test", []string{"b@y.test", "c@y.test"}, "m")
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, "state", id), []byte(`{"rcpts":[{"addr":`), 0o640); err != nil {
		t.Fatal(err)
	}
	s2, msgs, rep, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(msgs) != 1 || len(rep.BadState) != 1 || msgs[0].State.Rcpts[0].Final() || msgs[0].State.Rcpts[1].Final() {
		t.Fatalf("msgs %+v report %+v: want the message with every recipient pending", msgs, rep)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("client went away") }

func truncate(t *testing.T, p string, n int64) {
	t.Helper()
	if n < 0 {
		fi, _ := os.Stat(p)
		n += fi.Size()
	}
	if err := os.Truncate(p, n); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, p string, off int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x55
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// rewriteEnvelope replaces the envelope and recomputes lengths and checksum,
// so only the envelope check can catch it.
func rewriteEnvelope(t *testing.T, p string, env []byte) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	envLen := binary.BigEndian.Uint32(b[8:12])
	body := b[12+envLen : len(b)-tailLen]
	var out bytes.Buffer
	out.WriteString(headMagic)
	out.Write(binary.BigEndian.AppendUint32(nil, uint32(len(env))))
	out.Write(env)
	out.Write(body)
	out.Write(binary.BigEndian.AppendUint64(nil, uint64(len(body))))
	sum := sha256Sum(out.Bytes())
	out.Write(sum)
	out.WriteString(tailMagic)
	if err := os.WriteFile(p, out.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
}
