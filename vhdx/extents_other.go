//go:build !linux

package vhdx

import "os"

// dataExtents reports the whole file as data where SEEK_DATA is not used;
// the block scan still skips the zeros, it only reads them first.
func dataExtents(_ *os.File, size int64, fn func(start, end int64) error) error {
	if size == 0 {
		return nil
	}
	return fn(0, size)
}

// startWriteback is a hint only; elsewhere the final fsync does all.
func startWriteback(_ *os.File, _, _ int64) {}
