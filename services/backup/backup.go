// Package backup keeps a copy of every processed message in Backup
// (/var/opt/kaspersky/ksmg/backup), capped in total size (7 GB by default);
// when the cap is exceeded the oldest copies are deleted first. Queue ids
// are time-ordered, so name order is age order.
//
// A copy is the message's queue file itself (envelope with client IP and
// addresses, the message as received, checksum; see package spool and
// spool.ReadFile), named <queue id>.msg. Queue files are never modified
// after they are committed, so Add hard-links them: a copy costs a
// directory entry instead of a second file write per message, which matters
// at the gateway's message rates. Across file systems Add copies instead.
//
// Copies are not fsynced: Backup is an archive of mail that the spool holds
// durably until delivery, and an fsync per copy would halve throughput for
// no delivery guarantee. A copied (not linked) file is written under a
// temporary name and renamed, so a half copy is never visible.
package backup

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
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
		if !strings.HasSuffix(name, ".msg") {
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

// Add stores a copy of the queue file src as <id>.msg.
func (s *Store) Add(id, src string) error {
	if id == "" || strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("backup: bad id %q", id)
	}
	name := id + ".msg"
	dst := filepath.Join(s.dir, name)
	err := os.Link(src, dst)
	if errors.Is(err, fs.ErrExist) {
		err = nil // a retry after a restart: the copy is there
	}
	if err != nil {
		if err = copyFile(src, dst); err != nil {
			return fmt.Errorf("backup: copy of %s: %w", id, err)
		}
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	size := fi.Size()
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

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
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
