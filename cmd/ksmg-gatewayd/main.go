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
	if err := gatewayd.Run(context.Background(), gatewayd.Options{ConfigPath: *path, Config: cfg, Stderr: jl}); err != nil {
		jl.Error("ksmg-gatewayd failed", "err", err)
		return 1
	}
	return 0
}
