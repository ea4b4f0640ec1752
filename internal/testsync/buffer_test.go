package testsync

import (
	"strings"
	"sync"
	"testing"
)

// TestBufferConcurrentWrites: under -race, concurrent writers and readers
// are safe, and no write is lost or torn.
func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("line\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "line\n"); n != 800 {
		t.Fatalf("got %d lines, want 800", n)
	}
	if len(b.String()) != 800*len("line\n") {
		t.Fatalf("torn writes: %d bytes", len(b.String()))
	}
}
