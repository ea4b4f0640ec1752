package apply

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// colonFile is /etc/passwd, group, shadow or gshadow: one record per line,
// fields separated by ':'. Edited by hand rather than with useradd/chpasswd
// because those need the target's own binaries (chroot) and the tests
// apply to a scratch root; the format is trivial and stable.
type colonFile struct {
	path  string
	lines []string
}

func readColonFile(path string) (*colonFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	s := strings.TrimRight(string(b), "\n")
	var lines []string
	if s != "" {
		lines = strings.Split(s, "\n")
	}
	return &colonFile{path: path, lines: lines}, nil
}

func (f *colonFile) find(name string) (int, []string) {
	for i, l := range f.lines {
		fields := strings.Split(l, ":")
		if fields[0] == name {
			return i, fields
		}
	}
	return -1, nil
}

// set replaces the record of name, or appends it.
func (f *colonFile) set(name string, fields []string) {
	line := strings.Join(fields, ":")
	if i, _ := f.find(name); i >= 0 {
		f.lines[i] = line
		return
	}
	f.lines = append(f.lines, line)
}

func (f *colonFile) bytes() []byte {
	return []byte(strings.Join(f.lines, "\n") + "\n")
}

// id returns field 2 (uid or gid) of name.
func (f *colonFile) id(name string) (int, bool) {
	_, fields := f.find(name)
	if len(fields) < 3 {
		return 0, false
	}
	n, err := strconv.Atoi(fields[2])
	return n, err == nil
}

// freeID is the lowest id >= 1000 (Debian's FIRST_UID) unused in every file.
func freeID(files ...*colonFile) int {
	used := map[int]bool{}
	for _, f := range files {
		for _, l := range f.lines {
			fields := strings.Split(l, ":")
			if len(fields) > 2 {
				if n, err := strconv.Atoi(fields[2]); err == nil {
					used[n] = true
				}
			}
		}
	}
	id := 1000
	for used[id] {
		id++
	}
	return id
}
