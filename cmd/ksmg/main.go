// Command ksmg builds, inspects and deploys the ksmg appliance.
//
// Each subcommand lives in its own file of this package and registers itself
// on root in an init function; the work itself is done by the library
// packages (appliance, images, ova, vhdx, deploy), so this stays thin.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
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

var jsonLogs bool

var root = &cobra.Command{
	Use:           "ksmg",
	Short:         "Build, inspect and deploy the ksmg mail-security gateway appliance",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	root.PersistentFlags().BoolVar(&jsonLogs, "json", false, "structured JSON logs and output instead of terminal progress")
}

// interactive reports whether progress should be drawn for a person: a
// terminal on stderr and no --json.
func interactive() bool {
	return !jsonLogs && term.IsTerminal(int(os.Stderr.Fd()))
}

// logger returns the process logger: JSON when asked or not on a terminal.
func logger() *slog.Logger {
	if interactive() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ksmg:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
