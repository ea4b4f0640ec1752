package sources

import (
	"os"
	"syscall"
)

// lockFile takes the POSIX write lock hv_kvp_daemon uses on its pools
// (fcntl F_SETLKW over the whole file) so the daemon does not rewrite the
// pool while we scrub it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &lk); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing drops the lock
}
