package main

import (
	"encoding/json"
	"errors"
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
	"github.com/ksmg-appliance/ksmg/sign"
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
Secure Boot. Writes <name>-<version>.<ext> for every format, the image's
SPDX SBOM (<name>-<version>.spdx.json) and SHA256SUMS into --out,
atomically; with --sign-key also SHA256SUMS.asc, an OpenPGP signature of
SHA256SUMS (check it with ksmg inspect --verify). The key's passphrase comes
from $KSMG_SIGN_PASSPHRASE or --sign-passphrase-file, never the command
line. Needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBuild(cmd, a, v) },
	}
	f := cmd.Flags()
	f.String("spec", "", "appliance spec YAML (default: the embedded appliance.yaml)")
	f.StringSlice("format", nil, "output formats, comma separated (default: the spec's formats)")
	f.String("out", "out", "output directory")
	f.String("bin", "bin", "directory with the built binaries (ksmg-gatewayd, ...); env KSMG_BIN_DIR")
	f.String("cache", "", "package cache directory; env KSMG_CACHE (default ~/.cache/ksmg)")
	f.String("sign-key", "", "OpenPGP secret key file (mode 0600) that signs SHA256SUMS; env KSMG_SIGN_KEY")
	f.String("sign-passphrase-file", "", "file whose first line is the signing key's passphrase; env KSMG_SIGN_PASSPHRASE_FILE (or the passphrase itself in KSMG_SIGN_PASSPHRASE)")
	for key, env := range map[string]string{"spec": "KSMG_SPEC", "format": "KSMG_FORMAT", "out": "KSMG_OUT", "bin": "KSMG_BIN_DIR", "cache": "KSMG_CACHE",
		"sign-key": "KSMG_SIGN_KEY", "sign-passphrase-file": "KSMG_SIGN_PASSPHRASE_FILE"} {
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

	// The signing key is unlocked before the build: a wrong passphrase
	// fails in a second, not after the image is built.
	var signer *sign.Signer
	if key := v.GetString("sign-key"); key != "" {
		pass, err := sign.ReadPassphrase(v.GetString("sign-passphrase-file"))
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if signer, err = sign.LoadSigner(key, pass); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--sign-key: %w", err)}
		}
	} else if v.GetString("sign-passphrase-file") != "" {
		return &exitError{code: 2, err: errors.New("--sign-passphrase-file without --sign-key")}
	}

	log := a.logger()
	opts := images.Options{
		Spec: spec, OutDir: v.GetString("out"), BinDir: v.GetString("bin"), CacheDir: cache,
		Formats: formats, Log: log, Signer: signer,
	}
	if signer != nil {
		log.Info("signing SHA256SUMS", "key", signer.Fingerprint())
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
	fmt.Fprintln(os.Stdout, res.SHA256SUM)
	if res.Signature != "" {
		fmt.Fprintln(os.Stdout, res.Signature)
	}
	fmt.Fprintf(os.Stdout, "built in %s\n", res.Elapsed.Round(100*time.Millisecond))
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
