// Package backup keeps a copy of every processed message in Backup
// (/var/opt/kaspersky/ksmg/backup) as <queue id>.eml, capped in total size
// (7 GB by default); when the cap is exceeded the oldest copies are deleted
// first. Queue ids are time-ordered, so name order is age order.
//
// The copy is written to a temporary name and renamed, so a half copy is
// never visible, but it is not fsynced: Backup is an archive of mail that
// the spool already holds durably, and an fsync per message would halve the
// gateway's throughput for no delivery guarantee.
package backup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Store is a size-capped backup directory.
type Store struct {
	dir   string
	mu    sync.Mutex
	max   int64
	files []file // oldest first
	total int64
}

type file struct {
	name string
	size int64
}

// Open scans dir (creating it) and enforces max at once.
func Open(dir string, max int64) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	s := &Store{dir: dir, max: max}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			os.Remove(filepath.Join(dir, name)) // an interrupted copy
			continue
		}
		if !strings.HasSuffix(name, ".eml") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		s.files = append(s.files, file{name, fi.Size()})
		s.total += fi.Size()
	}
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].name < s.files[j].name })
	s.mu.Lock()
	s.enforceLocked()
	s.mu.Unlock()
	return s, nil
}

// SetMax changes the cap (config reload) and enforces it.
func (s *Store) SetMax(max int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = max
	s.enforceLocked()
}

// Size is the total size of the kept copies.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Put stores a copy of message id: the envelope as X-KSMG-* header fields
// prepended to the message as received.
func (s *Store) Put(id, from string, to []string, body io.Reader) error {
	if id == "" || strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("backup: bad id %q", id)
	}
	tmp := filepath.Join(s.dir, "."+id+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	w := bufio.NewWriterSize(f, 32<<10)
	fmt.Fprintf(w, "X-KSMG-Queue-ID: %s\r\nX-KSMG-Envelope-From: <%s>\r\n", id, from)
	for _, r := range to {
		fmt.Fprintf(w, "X-KSMG-Envelope-To: <%s>\r\n", r)
	}
	_, err = io.Copy(w, body)
	if err == nil {
		err = w.Flush()
	}
	var size int64
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			size = fi.Size()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	name := id + ".eml"
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: copy of %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Usually the newest; keep the order if an older id is backed up late.
	i := sort.Search(len(s.files), func(i int) bool { return s.files[i].name >= name })
	if i < len(s.files) && s.files[i].name == name {
		s.total -= s.files[i].size
		s.files[i].size = size
	} else {
		s.files = append(s.files, file{})
		copy(s.files[i+1:], s.files[i:])
		s.files[i] = file{name, size}
	}
	s.total += size
	s.enforceLocked()
	return nil
}

func (s *Store) enforceLocked() {
	drop := 0
	for s.total > s.max && drop < len(s.files) {
		f := s.files[drop]
		if err := os.Remove(filepath.Join(s.dir, f.name)); err != nil && !os.IsNotExist(err) {
			break // keep accounting honest; retried at the next Put
		}
		s.total -= f.size
		drop++
	}
	s.files = s.files[drop:]
}
