//go:build !linux

package vhdx

import "os"

// startWriteback is a hint only; elsewhere the final fsync does all.
func startWriteback(_ *os.File, _, _ int64) {}
