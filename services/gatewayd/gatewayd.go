// Package gatewayd wires the gateway daemon: configuration, logs, spool
// recovery, Backup, the relay workers and the SMTP listeners, and the
// systemd protocol (Type=notify, watchdog, reload and stop) around them.
package gatewayd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ksmg-appliance/ksmg/services/backup"
	"github.com/ksmg-appliance/ksmg/services/config"
	"github.com/ksmg-appliance/ksmg/services/eventlog"
	"github.com/ksmg-appliance/ksmg/services/relay"
	"github.com/ksmg-appliance/ksmg/services/routing"
	"github.com/ksmg-appliance/ksmg/services/smtpd"
	"github.com/ksmg-appliance/ksmg/services/spool"
)

// DrainTimeout bounds how long SIGTERM waits for SMTP sessions to finish
// before closing them (systemd's TimeoutStopSec must be longer).
var DrainTimeout = 20 * time.Second

// Options for Run.
type Options struct {
	ConfigPath string         // "" = config.DefaultPath (may be absent)
	Config     *config.Config // loaded by the caller (exit status 2 if invalid)
	Stderr     *slog.Logger   // the journal
}

// Run serves until ctx ends or SIGTERM/SIGINT arrives, then drains.
func Run(ctx context.Context, opt Options) error {
	var cur atomic.Pointer[config.Config]
	cur.Store(opt.Config)
	cfg := opt.Config
	jl := opt.Stderr

	logs, err := eventlog.Open(eventlog.Options{
		MessagesFile: cfg.Logging.MessagesFile, ImportantFile: cfg.Logging.ImportantFile,
		TraceDir: cfg.Logging.TraceDir, Trace: cfg.Logging.Trace, EventsDir: cfg.Logging.EventsDir,
		EventsRetention: cfg.Logging.EventsRetention, EventsMaxSize: cfg.Logging.EventsMaxSize,
		Stderr: jl.Handler(),
	})
	if err != nil {
		return fmt.Errorf("open logs: %w", err)
	}
	defer logs.Close()
	imp := logs.Important()

	sp, msgs, rep, err := spool.Open(cfg.SpoolDir)
	if err != nil {
		imp.Error("cannot open the mail queue", "dir", cfg.SpoolDir, "err", err)
		return fmt.Errorf("open spool: %w", err)
	}
	defer sp.Close()
	for _, c := range rep.Corrupt {
		imp.Error("torn queue entry set aside, not delivered", "queue_id", c.Name, "reason", c.Reason, "moved_to", c.MovedTo)
	}
	for _, b := range rep.BadState {
		imp.Warn("unreadable delivery state; every recipient is retried (duplicates possible)", "entry", b)
	}
	if rep.TmpRemoved > 0 {
		jl.Info("removed unacknowledged partial messages", "count", rep.TmpRemoved)
	}

	bk, err := backup.Open(cfg.Backup.Dir, cfg.Backup.MaxSize)
	if err != nil {
		imp.Error("cannot open Backup", "dir", cfg.Backup.Dir, "err", err)
		return fmt.Errorf("open backup: %w", err)
	}

	var certPtr atomic.Pointer[tls.Certificate]
	cert, generated, err := smtpd.LoadOrCreateCert(cfg.TLS.CertFile, cfg.TLS.KeyFile, routing.Hostname(cfg), cfg.TLS.Generate)
	if err != nil {
		imp.Error("STARTTLS certificate unavailable", "err", err)
		return err
	}
	if generated {
		imp.Warn("generated a self-signed STARTTLS certificate; install a trusted one", "cert", cfg.TLS.CertFile)
	}
	certPtr.Store(&cert)
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return certPtr.Load(), nil
	}}

	rl := relay.New(relay.Options{Config: cur.Load, Spool: sp, Backup: bk, Events: logs, Log: imp})
	for _, m := range msgs {
		rl.Enqueue(m)
	}
	srv := smtpd.New(smtpd.Options{Config: cur.Load, Spool: sp, Queue: rl, Events: logs, Log: imp, TLS: tlsCfg, Trace: logs.TraceWriter()})

	listeners, err := activation.Listeners()
	if err != nil {
		return fmt.Errorf("systemd socket activation: %w", err)
	}
	if len(listeners) > 0 {
		jl.Info("using sockets passed by systemd", "count", len(listeners))
	} else {
		for _, a := range cfg.Listen {
			l, err := net.Listen("tcp", a)
			if err != nil {
				for _, l := range listeners {
					l.Close()
				}
				imp.Error("cannot listen", "addr", a, "err", err)
				return fmt.Errorf("listen %s: %w", a, err)
			}
			listeners = append(listeners, l)
		}
	}

	relayCtx, stopRelay := context.WithCancel(context.Background())
	rl.Start(relayCtx)
	serveErr := make(chan error, len(listeners))
	var serving sync.WaitGroup
	for _, l := range listeners {
		serving.Add(1)
		go func() {
			defer serving.Done()
			serveErr <- srv.Serve(l)
		}()
	}
	addrs := make([]string, len(listeners))
	for i, l := range listeners {
		addrs[i] = l.Addr().String()
	}
	imp.Info("ksmg-gatewayd started", "listen", addrs, "queued", len(msgs), "corrupt", len(rep.Corrupt), "config", cfg.Source)
	daemon.SdNotify(false, daemon.SdNotifyReady)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, stopSignals...)
	signal.Notify(sigs, reloadSignal, reopenSignal)
	defer signal.Stop(sigs)

	var watchdog <-chan time.Time
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		t := time.NewTicker(d / 2)
		defer t.Stop()
		watchdog = t.C
	}
	maint := time.NewTicker(time.Minute)
	defer maint.Stop()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-serveErr:
			if err != nil {
				imp.Error("SMTP listener failed", "err", err)
				runErr = err
				break loop
			}
		case <-watchdog:
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		case <-maint.C:
			logs.Prune()
		case s := <-sigs:
			switch s {
			case reloadSignal:
				daemon.SdNotify(false, daemon.SdNotifyReloading+"\nMONOTONIC_USEC="+daemon.SdNotifyMonotonicUsec())
				reload(opt.ConfigPath, &cur, &certPtr, logs, bk, imp)
				daemon.SdNotify(false, daemon.SdNotifyReady)
			case reopenSignal:
				if err := logs.Reopen(); err != nil {
					jl.Error("cannot reopen log files", "err", err)
				} else {
					jl.Info("log files reopened")
				}
			default:
				break loop
			}
		}
	}

	daemon.SdNotify(false, daemon.SdNotifyStopping)
	imp.Info("ksmg-gatewayd stopping: draining sessions; queued mail stays queued", "queued", rl.Len())
	dctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	if err := srv.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		jl.Warn("SMTP shutdown", "err", err)
	}
	cancel()
	serving.Wait()
	stopRelay()
	// A delivery in progress finishes its SMTP transaction; one that hangs
	// longer than DrainTimeout is abandoned (its message stays queued and is
	// delivered again after the restart: at worst a duplicate).
	relayDone := make(chan struct{})
	go func() { rl.Wait(); close(relayDone) }()
	select {
	case <-relayDone:
	case <-time.After(DrainTimeout):
		imp.Warn("relay workers still busy at stop; their messages stay queued")
	}
	imp.Info("ksmg-gatewayd stopped")
	return runErr
}

// reload applies a new configuration. Listeners, the spool directory,
// limits enforced by the SMTP library and relay.workers need a restart; the
// policy, routes, lists, Backup and log settings apply at once.
func reload(path string, cur *atomic.Pointer[config.Config], cert *atomic.Pointer[tls.Certificate], logs *eventlog.Log, bk *backup.Store, imp *slog.Logger) {
	nc, err := config.Load(path)
	if err != nil {
		imp.Error("configuration reload rejected; the running configuration stays in effect", "err", err)
		return
	}
	old := cur.Load()
	c, _, err := smtpd.LoadOrCreateCert(nc.TLS.CertFile, nc.TLS.KeyFile, routing.Hostname(nc), nc.TLS.Generate)
	if err != nil {
		imp.Error("configuration reload rejected; the running configuration stays in effect", "err", err)
		return
	}
	cert.Store(&c)
	if err := logs.SetTrace(nc.Logging.Trace); err != nil {
		imp.Error("cannot switch tracing", "err", err)
	}
	logs.SetRetention(nc.Logging.EventsRetention, nc.Logging.EventsMaxSize)
	bk.SetMax(nc.Backup.MaxSize)
	cur.Store(nc)
	var restart []string
	if fmt.Sprint(old.Listen) != fmt.Sprint(nc.Listen) {
		restart = append(restart, "listen")
	}
	if old.SpoolDir != nc.SpoolDir {
		restart = append(restart, "spool_dir")
	}
	if old.Backup.Dir != nc.Backup.Dir {
		restart = append(restart, "backup.dir")
	}
	if old.Relay.Workers != nc.Relay.Workers {
		restart = append(restart, "relay.workers")
	}
	if old.Limits.MaxLineLength != nc.Limits.MaxLineLength || old.Limits.IdleTimeout != nc.Limits.IdleTimeout || old.Limits.MaxSessions != nc.Limits.MaxSessions {
		restart = append(restart, "limits (line length, idle timeout, sessions)")
	}
	if old.Logging != nc.Logging && (old.Logging.MessagesFile != nc.Logging.MessagesFile || old.Logging.ImportantFile != nc.Logging.ImportantFile || old.Logging.EventsDir != nc.Logging.EventsDir || old.Logging.TraceDir != nc.Logging.TraceDir) {
		restart = append(restart, "log file locations")
	}
	if len(restart) > 0 {
		imp.Warn("configuration reloaded; some changes take effect only after a restart", "keys", restart)
	} else {
		imp.Info("configuration reloaded", "config", nc.Source)
	}
}
