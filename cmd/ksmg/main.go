// Command ksmg builds, inspects and deploys the ksmg appliance.
//
// Each subcommand lives in its own file of this package and is built by a
// constructor (newBuildCmd, newInspectCmd, newDeployCmd, ...) that newRootCmd
// calls: no command, flag or setting is package state, so tests build a
// fresh command tree per run. The work itself is done by the library
// packages (appliance, images, ova, vhdx, deploy), so this stays thin.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// exitError carries a specific exit status out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// app is what the commands of one ksmg run share: the global flags and
// the ways to reach targets, which tests replace.
type app struct {
	json bool // --json: structured logs and output

	openHyperV openHyperVFunc
	openScvmm  openScvmmFunc
}

// newApp returns the settings of a real run.
func newApp() *app {
	return &app{openHyperV: openHyperV, openScvmm: openScvmm}
}

// newRootCmd builds the whole command tree on a.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "ksmg",
		Short:         "Build, inspect and deploy the ksmg mail-security gateway appliance",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolVar(&a.json, "json", false, "structured JSON logs and output instead of terminal progress")
	// Bad flags are bad input: exit status 2, as for every other.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usage("%s: %v (see %s --help)", cmd.CommandPath(), err, cmd.CommandPath())
	})
	// One log format for the whole run: whatever logs through the default
	// logger (a library, a driver) writes as the command does.
	root.PersistentPreRun = func(*cobra.Command, []string) { slog.SetDefault(a.logger()) }
	root.AddCommand(newBuildCmd(a), newInspectCmd(a), newDeployCmd(a))
	return root
}

// interactive reports whether progress should be drawn for a person: a
// terminal on stderr and no --json.
func (a *app) interactive() bool {
	return !a.json && term.IsTerminal(int(os.Stderr.Fd()))
}

// logger returns the process logger: JSON when asked or not on a terminal.
func (a *app) logger() *slog.Logger {
	if a.interactive() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

func main() { os.Exit(run()) }

// run runs the command line and returns the exit status.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := newApp()
	err := newRootCmd(a).ExecuteContext(ctx)
	return finish(os.Stderr, a.json, err)
}

// finish reports the command's error, if any, on stderr and returns the
// exit status. With --json the report is a JSON log record like every
// other line on stderr (error, exit status), so a log reader never meets a
// line of another format.
func finish(stderr io.Writer, jsonLog bool, err error) int {
	if err == nil {
		return 0
	}
	code := 1
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case strings.HasPrefix(err.Error(), "unknown command "):
		code = 2 // cobra's, for a mistyped subcommand: bad input
	}
	if jsonLog {
		slog.New(slog.NewJSONHandler(stderr, nil)).Error("ksmg failed", "err", err.Error(), "exit", code)
		return code
	}
	fmt.Fprintln(stderr, "ksmg:", err)
	return code
}
