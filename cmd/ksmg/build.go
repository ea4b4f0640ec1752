package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images"
)

// newBuildCmd builds `ksmg build`: flags, overridable by environment (KSMG_BIN_DIR, KSMG_CACHE,
// KSMG_OUT, KSMG_SPEC, KSMG_FORMAT) through viper.
func newBuildCmd(a *app) *cobra.Command {
	registerFormats()
	v := viper.New()
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the appliance disk (raw) and its formats from an appliance spec",
		Long: `Build the appliance: a Debian 13 root file system from the package cache
($KSMG_CACHE, default ~/.cache/ksmg; filled from the mirror on the first
build), the ksmg payload, and a sparse GPT disk that boots under UEFI
Secure Boot. Writes <name>-<version>.<ext> for every format and SHA256SUMS
into --out, atomically. Needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBuild(cmd, a, v) },
	}
	f := cmd.Flags()
	f.String("spec", "", "appliance spec YAML (default: the embedded appliance.yaml)")
	f.StringSlice("format", nil, "output formats, comma separated (default: the spec's formats)")
	f.String("out", "out", "output directory")
	f.String("bin", "bin", "directory with the built binaries (ksmg-gatewayd, ...); env KSMG_BIN_DIR")
	f.String("cache", "", "package cache directory; env KSMG_CACHE (default ~/.cache/ksmg)")
	for key, env := range map[string]string{"spec": "KSMG_SPEC", "format": "KSMG_FORMAT", "out": "KSMG_OUT", "bin": "KSMG_BIN_DIR", "cache": "KSMG_CACHE"} {
		_ = v.BindPFlag(key, f.Lookup(key))
		_ = v.BindEnv(key, env)
	}
	return cmd
}

func runBuild(cmd *cobra.Command, a *app, v *viper.Viper) error {
	spec, err := appliance.Load(v.GetString("spec"))
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	cache := v.GetString("cache")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("package cache: set --cache or KSMG_CACHE: %w", err)
		}
		cache = filepath.Join(home, ".cache", "ksmg")
	}
	var formats []string
	for _, f := range v.GetStringSlice("format") {
		for _, p := range strings.Split(f, ",") {
			if p = strings.TrimSpace(p); p != "" {
				formats = append(formats, p)
			}
		}
	}
	if formats == nil {
		formats = spec.Formats
	}
	known := map[string]bool{}
	for _, k := range images.Formats() {
		known[k] = true
	}
	for _, f := range formats {
		if !known[f] {
			return &exitError{code: 2, err: fmt.Errorf("--format %q: unknown format (known: %s)", f, strings.Join(images.Formats(), ", "))}
		}
	}

	log := a.logger()
	opts := images.Options{
		Spec: spec, OutDir: v.GetString("out"), BinDir: v.GetString("bin"), CacheDir: cache,
		Formats: formats, Log: log,
	}
	var prog *progress
	if a.interactive() {
		// On a terminal the progress line replaces the info logs.
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		prog = newProgress()
		opts.Progress = prog.set
		defer prog.stop()
	}
	res, err := images.Build(cmd.Context(), opts)
	if prog != nil {
		prog.stop()
	}
	if err != nil {
		return err
	}
	if a.json {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	for _, o := range res.Outputs {
		fmt.Fprintf(os.Stdout, "%s  %s  (%s)\n", o.SHA256, o.Path, humanBytes(o.Size))
	}
	fmt.Fprintf(os.Stdout, "%s\nbuilt in %s\n", res.SHA256SUM, res.Elapsed.Round(100*time.Millisecond))
	return nil
}

// progress redraws one status line on the terminal: stage, elapsed, bytes.
type progress struct {
	mu    sync.Mutex
	cur   images.Progress
	start time.Time
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func newProgress() *progress {
	p := &progress{start: time.Now(), done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				p.draw()
				fmt.Fprintln(os.Stderr)
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *progress) set(pr images.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = pr
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(os.Stderr, "\r\033[K%-22s %7.1fs  %s", p.cur.Stage, time.Since(p.start).Seconds(), humanBytes(p.cur.Bytes))
}

func (p *progress) stop() {
	p.once.Do(func() { close(p.done); p.wg.Wait() })
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
