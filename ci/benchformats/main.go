// Command benchformats times our disk-format writers against the reference
// tool (qemu-img) on the same raw disk in one run and prints wall time,
// output size and the ratios. It is run by ci/bench-formats.sh.
//
// Each format is a Row; a format adds itself from its own file of this
// package with func init() { rows = append(rows, Row{...}) } (see vmdk.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Row is one format: our writer and the reference command for the same job.
type Row struct {
	Name string
	Ext  string
	// Ours converts raw to out in this process.
	Ours func(ctx context.Context, raw, out string) error
	// Ref returns the reference command converting raw to out.
	Ref func(raw, out string) []string
}

var rows []Row

func main() {
	raw := flag.String("raw", "", "raw disk to convert (default: newest out/ksmg-*.raw, else a generated one)")
	work := flag.String("work", "", "directory for outputs and a generated disk (default: a temporary directory)")
	only := flag.String("only", "", "run only rows whose name contains this")
	runs := flag.Int("runs", 1, "runs per tool; the fastest counts")
	genSize := flag.Int64("gen-size", 2<<30, "virtual size of a generated disk")
	genData := flag.Int64("gen-data", 600<<20, "bytes of file content in a generated disk")
	flag.Parse()
	if err := run(*raw, *work, *only, *runs, *genSize, *genData); err != nil {
		log.Fatal(err)
	}
}

// run converts the disk with ours and the reference tool per row; errors
// are returned, not fatal, so the deferred cleanup runs.
func run(raw, work, only string, runs int, genSize, genData int64) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	dir := work
	if dir == "" {
		d, err := os.MkdirTemp("", "benchformats-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	src := raw
	if src == "" {
		if m, _ := filepath.Glob("out/ksmg-*.raw"); len(m) > 0 {
			sort.Slice(m, func(i, j int) bool { return modTime(m[i]).After(modTime(m[j])) })
			src = m[0]
		}
	}
	if src == "" {
		src = filepath.Join(dir, "generated.raw")
		t := time.Now()
		n, err := generate(src, genSize, genData)
		if err != nil {
			return fmt.Errorf("generate disk: %w", err)
		}
		fmt.Printf("generated %s: %s virtual, %s of /usr files (%s)\n", src, human(genSize), human(n), time.Since(t).Round(time.Millisecond))
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	fmt.Printf("disk: %s, %s virtual; host: %d CPUs (GOMAXPROCS %d), shared\n", src, human(st.Size()), runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("%-22s %10s %10s %8s %12s %12s %8s\n", "format", "ours", "qemu-img", "speedup", "ours size", "ref size", "size")
	fail := false
	for _, r := range rows {
		if only != "" && !strings.Contains(r.Name, only) {
			continue
		}
		oursOut := filepath.Join(dir, "ours."+r.Ext)
		refOut := filepath.Join(dir, "ref."+r.Ext)
		ours, err := best(runs, func() error { os.Remove(oursOut); return r.Ours(ctx, src, oursOut) })
		if err != nil {
			log.Printf("%s: ours: %v", r.Name, err)
			fail = true
			continue
		}
		ref, err := best(runs, func() error {
			os.Remove(refOut)
			argv := r.Ref(src, refOut)
			if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
			}
			return nil
		})
		if err != nil {
			log.Printf("%s: reference: %v", r.Name, err)
			fail = true
			continue
		}
		so, sr := size(oursOut), size(refOut)
		fmt.Printf("%-22s %9.2fs %9.2fs %7.2fx %12s %12s %7.3fx\n", r.Name, ours.Seconds(), ref.Seconds(),
			ref.Seconds()/ours.Seconds(), human(so), human(sr), float64(so)/float64(sr))
		os.Remove(oursOut)
		os.Remove(refOut)
	}
	fmt.Println("speedup = qemu-img time / our time (higher is better); size = our size / qemu-img size (lower is better)")
	if fail {
		return errors.New("some rows failed")
	}
	return nil
}

func best(n int, f func() error) (time.Duration, error) {
	var b time.Duration
	for i := 0; i < max(n, 1); i++ {
		t := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		if d := time.Since(t); i == 0 || d < b {
			b = d
		}
	}
	return b, nil
}

func size(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func modTime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// generate makes a sparse disk of realistic content: the regular files under
// /usr (binaries, libraries, text, compressed docs) in sorted order, each at a
// 4 KiB-aligned offset as a file system would put them, with holes between
// runs of files, until data bytes are written. Same host, same disk.
func generate(p string, virt, data int64) (int64, error) {
	f, err := os.Create(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Truncate(virt); err != nil {
		return 0, err
	}
	var off, written int64 = 1 << 20, 0
	i := 0
	err = filepath.WalkDir("/usr", func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || written >= data {
			if written >= data {
				return filepath.SkipAll
			}
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			return nil
		}
		if int64(len(b)) > data-written {
			b = b[:data-written]
		}
		if off+int64(len(b)) > virt {
			return filepath.SkipAll
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
		written += int64(len(b))
		off = (off + int64(len(b)) + 4095) &^ 4095
		if i++; i%64 == 0 {
			off += 1 << 20 // a hole now and then, like free space between extents
		}
		return nil
	})
	if err != nil {
		return written, err
	}
	return written, f.Close()
}
