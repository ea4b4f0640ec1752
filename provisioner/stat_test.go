//go:build linux

package provisioner

import (
	"os"
	"syscall"
)

func statUID(st os.FileInfo) int { return int(st.Sys().(*syscall.Stat_t).Uid) }
func statGID(st os.FileInfo) int { return int(st.Sys().(*syscall.Stat_t).Gid) }
