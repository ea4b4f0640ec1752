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

// DefaultDrainTimeout is Options.DrainTimeout when unset.
const DefaultDrainTimeout = 20 * time.Second

// Options for Run.
type Options struct {
	ConfigPath string         // "" = config.DefaultPath (may be absent)
	Config     *config.Config // loaded by the caller (exit status 2 if invalid)
	Stderr     *slog.Logger   // the journal
	// DrainTimeout bounds how long a stop waits for SMTP sessions to finish
	// before closing them, and then for relay workers (0: 20 s; systemd's
	// TimeoutStopSec must be longer than twice this).
	DrainTimeout time.Duration
	// Notify sends one systemd notification (nil: sd_notify to
	// $NOTIFY_SOCKET, nothing without it).
	Notify func(state string)
}

// gateway is one run of the daemon: what Run opened, in the order it did.
type gateway struct {
	opt  Options
	cur  atomic.Pointer[config.Config]
	cert atomic.Pointer[tls.Certificate]
	jl   *slog.Logger // journal
	imp  *slog.Logger // important events
	logs *eventlog.Log
	sp   *spool.Spool
	bk   *backup.Store
	rl   *relay.Relay
	srv  *smtpd.Server

	listeners []net.Listener
	serving   sync.WaitGroup
	serveErr  chan error
	stopRelay context.CancelFunc
}

// Run serves until ctx ends or SIGTERM/SIGINT arrives, then drains. The
// steps: logs, queue recovery, Backup, certificate, relay and SMTP server,
// listeners, signal handlers, serving, READY=1, the event loop, the drain.
func Run(ctx context.Context, opt Options) error {
	if opt.DrainTimeout <= 0 {
		opt.DrainTimeout = DefaultDrainTimeout
	}
	if opt.Notify == nil {
		opt.Notify = func(state string) {
			if _, err := daemon.SdNotify(false, state); err != nil {
				opt.Stderr.Error("cannot notify systemd", "state", state, "err", err)
			}
		}
	}
	g := &gateway{opt: opt, jl: opt.Stderr}
	g.cur.Store(opt.Config)
	if err := g.openLogs(); err != nil {
		return err
	}
	defer g.logs.Close()
	msgs, corrupt, err := g.openQueue()
	if err != nil {
		return err
	}
	defer g.sp.Close()
	if err := g.openBackup(); err != nil {
		return err
	}
	if err := g.loadCertificate(); err != nil {
		return err
	}
	g.wire(msgs)
	if err := g.listen(); err != nil {
		return err
	}
	// The handlers are in place before READY=1: systemd may send SIGHUP
	// (a reload) as soon as it has seen it, and an unhandled SIGHUP kills
	// the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, stopSignals...)
	signal.Notify(sigs, reloadSignal, reopenSignal)
	defer signal.Stop(sigs)
	g.serve()
	g.imp.Info("ksmg-gatewayd started", "listen", g.addrs(), "queued", len(msgs), "corrupt", corrupt, "config", opt.Config.Source)
	g.opt.Notify(daemon.SdNotifyReady)
	runErr := g.loop(ctx, sigs)
	g.drain()
	return runErr
}

func (g *gateway) openLogs() error {
	cfg := g.cur.Load()
	logs, err := eventlog.Open(eventlog.Options{
		MessagesFile: cfg.Logging.MessagesFile, ImportantFile: cfg.Logging.ImportantFile,
		TraceDir: cfg.Logging.TraceDir, Trace: cfg.Logging.Trace, EventsDir: cfg.Logging.EventsDir,
		EventsRetention: cfg.Logging.EventsRetention, EventsMaxSize: cfg.Logging.EventsMaxSize,
		Stderr: g.jl.Handler(),
	})
	if err != nil {
		return fmt.Errorf("open logs: %w", err)
	}
	g.logs, g.imp = logs, logs.Important()
	return nil
}

// openQueue opens and recovers the spool and reports what recovery found.
func (g *gateway) openQueue() ([]*spool.Message, int, error) {
	dir := g.cur.Load().SpoolDir
	sp, msgs, rep, err := spool.Open(dir)
	if err != nil {
		g.imp.Error("cannot open the mail queue", "dir", dir, "err", err)
		return nil, 0, fmt.Errorf("open spool: %w", err)
	}
	g.sp = sp
	for _, c := range rep.Corrupt {
		g.imp.Error("torn queue entry set aside, not delivered", "queue_id", c.Name, "reason", c.Reason, "moved_to", c.MovedTo)
	}
	for _, b := range rep.BadState {
		g.imp.Warn("unreadable delivery state; every recipient is retried (duplicates possible)", "entry", b)
	}
	if rep.TmpRemoved > 0 {
		g.jl.Info("removed unacknowledged partial messages", "count", rep.TmpRemoved)
	}
	return msgs, len(rep.Corrupt), nil
}

func (g *gateway) openBackup() error {
	cfg := g.cur.Load()
	bk, err := backup.Open(cfg.Backup.Dir, cfg.Backup.MaxSize)
	if err != nil {
		g.imp.Error("cannot open Backup", "dir", cfg.Backup.Dir, "err", err)
		return fmt.Errorf("open backup: %w", err)
	}
	g.bk = bk
	return nil
}

// loadCertificate loads (or makes) the STARTTLS certificate; a reload can
// replace it later.
func (g *gateway) loadCertificate() error {
	cfg := g.cur.Load()
	cert, generated, err := smtpd.LoadOrCreateCert(cfg.TLS.CertFile, cfg.TLS.KeyFile, routing.Hostname(cfg), cfg.TLS.Generate)
	if err != nil {
		g.imp.Error("STARTTLS certificate unavailable", "err", err)
		return err
	}
	if generated {
		g.imp.Warn("generated a self-signed STARTTLS certificate; install a trusted one", "cert", cfg.TLS.CertFile)
	}
	g.cert.Store(&cert)
	return nil
}

// wire creates the relay (with the recovered queue) and the SMTP server.
func (g *gateway) wire(msgs []*spool.Message) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return g.cert.Load(), nil
	}}
	g.rl = relay.New(relay.Options{Config: g.cur.Load, Spool: g.sp, Backup: g.bk, Events: g.logs, Log: g.imp})
	for _, m := range msgs {
		g.rl.Enqueue(m)
	}
	g.srv = smtpd.New(smtpd.Options{Config: g.cur.Load, Spool: g.sp, Queue: g.rl, Events: g.logs, Log: g.imp, Diag: g.jl,
		TLS: tlsCfg, Trace: g.logs.TraceWriter()})
}

// listen takes the sockets systemd passed, or opens the configured ones.
func (g *gateway) listen() error {
	listeners, err := activation.Listeners()
	if err != nil {
		return fmt.Errorf("systemd socket activation: %w", err)
	}
	if len(listeners) > 0 {
		g.jl.Info("using sockets passed by systemd", "count", len(listeners))
		g.listeners = listeners
		return nil
	}
	lc := net.ListenConfig{Control: freeBind}
	for _, a := range g.cur.Load().Listen {
		l, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			g.imp.Error("cannot listen", "addr", a, "err", err)
			return fmt.Errorf("listen %s: %w", a, err)
		}
		listeners = append(listeners, l)
	}
	g.listeners = listeners
	return nil
}

func (g *gateway) addrs() []string {
	addrs := make([]string, len(g.listeners))
	for i, l := range g.listeners {
		addrs[i] = l.Addr().String()
	}
	return addrs
}

// serve starts the relay workers and one SMTP accept loop per listener.
func (g *gateway) serve() {
	relayCtx, stop := context.WithCancel(context.Background())
	g.stopRelay = stop
	g.rl.Start(relayCtx)
	g.serveErr = make(chan error, len(g.listeners))
	for _, l := range g.listeners {
		g.serving.Add(1)
		go func() {
			defer g.serving.Done()
			g.serveErr <- g.srv.Serve(l)
		}()
	}
}

// loop handles signals, the watchdog and log pruning until a stop.
func (g *gateway) loop(ctx context.Context, sigs <-chan os.Signal) error {
	var watchdog <-chan time.Time
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		t := time.NewTicker(d / 2)
		defer t.Stop()
		watchdog = t.C
	}
	maint := time.NewTicker(time.Minute)
	defer maint.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-g.serveErr:
			if err != nil {
				g.imp.Error("SMTP listener failed", "err", err)
				return err
			}
		case <-watchdog:
			g.opt.Notify(daemon.SdNotifyWatchdog)
		case <-maint.C:
			g.logs.Prune()
		case s := <-sigs:
			switch s {
			case reloadSignal:
				// SdNotifyMonotonicUsec already says "MONOTONIC_USEC=".
				g.opt.Notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
				reload(g.opt.ConfigPath, &g.cur, &g.cert, g.logs, g.bk, g.imp)
				g.opt.Notify(daemon.SdNotifyReady)
			case reopenSignal:
				if err := g.logs.Reopen(); err != nil {
					g.jl.Error("cannot reopen log files", "err", err)
				} else {
					g.jl.Info("log files reopened")
				}
			default:
				return nil
			}
		}
	}
}

// drain stops accepting, lets sessions finish within DrainTimeout, then
// stops the relay. A delivery in progress finishes its SMTP transaction; one
// that hangs longer than DrainTimeout is abandoned (its message stays
// queued and is delivered again after the restart: at worst a duplicate).
func (g *gateway) drain() {
	g.opt.Notify(daemon.SdNotifyStopping)
	g.imp.Info("ksmg-gatewayd stopping: draining sessions; queued mail stays queued", "queued", g.rl.Len())
	// Shutdown closes only the listeners whose Serve has begun; a stop right
	// after READY=1 can come before an accept goroutine has run, and its
	// Serve would then accept for ever (and the stop wait for systemd's
	// SIGKILL). Closed here, every accept loop ends.
	for _, l := range g.listeners {
		_ = l.Close() // Shutdown then finds it closed, which is no error
	}
	dctx, cancel := context.WithTimeout(context.Background(), g.opt.DrainTimeout)
	if err := g.srv.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		g.jl.Warn("SMTP shutdown", "err", err)
	}
	cancel()
	g.serving.Wait()
	g.stopRelay()
	relayDone := make(chan struct{})
	go func() { g.rl.Wait(); close(relayDone) }()
	select {
	case <-relayDone:
	case <-time.After(g.opt.DrainTimeout):
		g.imp.Warn("relay workers still busy at stop; their messages stay queued")
	}
	g.imp.Info("ksmg-gatewayd stopped")
}

// reload applies a new configuration. Listeners, the spool directory,
// limits enforced by the SMTP library (line length, sessions, a higher
// max_message_size) and
// relay.workers need a restart; the timeouts and the junk limit apply to
// connections accepted from now on; the policy, routes, lists, Backup and
// log settings apply at once.
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
	if old.Limits.MaxLineLength != nc.Limits.MaxLineLength || old.Limits.MaxSessions != nc.Limits.MaxSessions {
		restart = append(restart, "limits (line length, sessions)")
	}
	if old.Limits.MaxMessageSize != nc.Limits.MaxMessageSize {
		// go-smtp advertises and enforces the size it was started with; a
		// lower one applies at once, a higher one only after a restart.
		restart = append(restart, "limits.max_message_size")
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
