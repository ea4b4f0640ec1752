//go:build !linux

package main

func keepInheritedFDsFromChildren() error { return nil }
