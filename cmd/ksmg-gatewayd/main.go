// Command ksmg-gatewayd is the appliance's SMTP gateway daemon: it receives
// mail for the protected domains, queues it durably, keeps a Backup copy and
// relays it to the internal mail servers. It runs as kluser under systemd
// (Type=notify); see services/config/default.yaml for the configuration.
//
// Exit status: 0 after a clean stop, 1 on a runtime failure, 2 when the
// configuration is invalid (the unit sets RestartPreventExitStatus=2).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ksmg-appliance/ksmg/services/config"
	"github.com/ksmg-appliance/ksmg/services/gatewayd"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("ksmg-gatewayd", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default "+config.DefaultPath+")")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	printDefault := fs.Bool("print-default-config", false, "print the documented default configuration and exit")
	var tempDirs []string
	fs.Func("temp-dir", "create this directory (mode 0750) before starting, e.g. the filter's temporary directories in the unit's private /tmp; repeatable", func(s string) error {
		if !filepath.IsAbs(s) {
			return fmt.Errorf("%q is not an absolute path", s)
		}
		tempDirs = append(tempDirs, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ksmg-gatewayd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *printDefault {
		os.Stdout.Write(config.DefaultYAML)
		return 0
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ksmg-gatewayd: %v\n", err)
		var ce *config.Error
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	if *check {
		fmt.Fprintf(os.Stderr, "ksmg-gatewayd: configuration OK\n")
		return 0
	}
	jl := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := makeDirs(tempDirs); err != nil {
		jl.Error("ksmg-gatewayd failed", "err", err)
		return 1
	}
	if err := gatewayd.Run(context.Background(), gatewayd.Options{ConfigPath: *path, Config: cfg, Stderr: jl}); err != nil {
		jl.Error("ksmg-gatewayd failed", "err", err)
		return 1
	}
	return 0
}

// makeDirs creates each directory with mode 0750 (an existing one is
// left as it is).
func makeDirs(dirs []string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("temporary directory: %w", err)
		}
	}
	return nil
}
