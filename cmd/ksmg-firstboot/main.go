// Command ksmg-firstboot is the appliance's first-boot setup: it reads
// unattended answers (VMware OVF environment, Hyper-V KVP, systemd
// credentials, a seed file on a config drive), applies them when complete,
// and otherwise opens the console wizard prefilled with the valid ones.
// It runs once (completion stamp); --reconfigure opens the wizard again.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	_ "time/tzdata" // time-zone validation must not depend on the host's tzdata

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"golang.org/x/text/message"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/apply"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
	"github.com/ksmg-appliance/ksmg/firstboot/status"
	"github.com/ksmg-appliance/ksmg/firstboot/tui"
)

type flags struct {
	root         string
	reconfigure  bool
	accessible   string
	interfaces   []string
	noSources    bool
	kvpPool      string
	guestKVPPool string
	credsDir     string
	seed         string
	labelsDir    string
	rpctool      string
	dmiVendor    string
	json         bool
	pollInterval time.Duration
	listKeys     bool
	charset      string
	stdinConsole bool
	hostnameUnit bool
	gatewayUnit  bool
	wizardUnits  []string
	consoleUnits []string
}

func main() {
	var f flags
	cmd := &cobra.Command{
		Use:           "ksmg-firstboot",
		Short:         "First-boot setup of the ksmg mail gateway appliance",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.listKeys {
				for _, k := range answers.Keys {
					secret := ""
					if k.Secret {
						secret = " (secret; scrubbed from the KVP pool after use)"
					}
					fmt.Fprintf(os.Stdout, "%-30s %s%s\n", k.Name, k.Help, secret)
				}
				return nil
			}
			var out io.Writer = os.Stdout
			if f.stdinConsole {
				out = os.Stdin
			}
			return run(cmd.Context(), f, os.Stdin, out)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.root, "root", "/", "root directory to configure (a scratch root in tests)")
	fl.BoolVar(&f.reconfigure, "reconfigure", false, "open the wizard again after setup was done, prefilled with the current settings")
	fl.StringVar(&f.accessible, "accessible", "auto", "line-by-line prompts for serial/dumb terminals: auto, on or off")
	fl.StringVar(&f.charset, "charset", "auto", "line prompts' character set: auto (ask the terminal), utf-8, or ascii (transliterated)")
	fl.StringSliceVar(&f.interfaces, "interfaces", nil, "network interfaces to configure (default: the machine's NICs)")
	fl.BoolVar(&f.noSources, "no-unattended", false, "ignore unattended answers (OVF, KVP, credentials, seed)")
	fl.StringVar(&f.kvpPool, "kvp-pool", sources.DefaultKVPPath, "Hyper-V host-to-guest KVP pool")
	fl.StringVar(&f.guestKVPPool, "guest-kvp-pool", sources.GuestKVPPath, "Hyper-V guest-to-host KVP pool, where completion is signalled")
	fl.StringVar(&f.credsDir, "credentials-dir", "", "systemd credentials directory (default $CREDENTIALS_DIRECTORY)")
	fl.StringVar(&f.seed, "seed", "", "seed YAML file to read (in addition to a KSMG-SEED/CIDATA config drive)")
	fl.StringVar(&f.labelsDir, "by-label", "/dev/disk/by-label", "where to look for a config drive by filesystem label")
	fl.StringVar(&f.rpctool, "vmware-rpctool", "vmware-rpctool", "VMware Tools' rpctool, to read guestinfo.ovfEnv")
	fl.StringVar(&f.dmiVendor, "dmi-vendor", sources.DMIVendorPath, "the machine's DMI vendor: vmware-rpctool is run only on a VMware VM (or when this cannot be read)")
	_ = fl.MarkHidden("dmi-vendor")
	fl.BoolVar(&f.json, "json", false, "JSON logs on stderr")
	fl.DurationVar(&f.pollInterval, "poll", 2*time.Second, "how often a waiting console checks whether another console finished setup")
	_ = fl.MarkHidden("poll")
	fl.BoolVar(&f.stdinConsole, "console-on-stdin", false, "write the wizard to the terminal on standard input (opened read-write), not to standard output (ksmg-firstboot@.service)")
	fl.BoolVar(&f.hostnameUnit, "hostname-by-unit", false, "set a new running host name by queueing ksmg-hostname.service (from /etc/hostname) instead of asking hostnamed (ksmg-firstboot@.service)")
	fl.BoolVar(&f.gatewayUnit, "gateway-by-unit", false, "do not ask systemd to start the gateway: the unit running this is ordered before it, and the boot starts it next (ksmg-firstboot@.service)")
	fl.StringSliceVar(&f.wizardUnits, "wizard-units", nil, "units to start when setup needs the wizard: the consoles' instances of ksmg-firstboot@.service, of which the boot starts only tty1's")
	fl.StringSliceVar(&f.consoleUnits, "console-units", nil, "units that set up a virtual console (font, keymap): waited for before the wizard opens or text beyond ASCII is written there (ksmg-firstboot@.service)")
	fl.BoolVar(&f.listKeys, "list-keys", false, "list the unattended answer keys (OVF properties, KVP items, credentials, seed file) and exit")

	cmd.AddCommand(&cobra.Command{
		Use:   "console-status",
		Short: "Wait for startup to finish, then print the appliance's status lines (ksmg-console-status.service)",
		Long: "Prints one line for people in the system language (LANG of /etc/locale.conf), then\n" +
			"KSMG-STATUS k=v ... (a fixed, untranslated format for boot tests and monitoring).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			facts := status.Gather(cmd.Context())
			// The sentence first: readers of the console (boot tests) take
			// the KSMG-STATUS line as "startup finished" and may stop there.
			_, err := fmt.Fprintf(os.Stdout, "%s\n%s\n", facts.Human(i18n.Printer(status.Language("/"))), facts.Line())
			return err
		},
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		if !errors.As(err, new(reported)) {
			fmt.Fprintln(os.Stderr, "ksmg-firstboot:", err)
		}
		os.Exit(1)
	}
}

// reported is an error already told on the console (in the reader's
// language) and in the logs: main only exits with it.
type reported struct{ error }

func (r reported) Unwrap() error { return r.error }

func newLogger(jsonLogs bool) *slog.Logger {
	if jsonLogs || !term.IsTerminal(int(os.Stderr.Fd())) {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	// On the console the wizard speaks for itself; only problems are logged.
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func run(ctx context.Context, f flags, in *os.File, out io.Writer) error {
	log := newLogger(f.json)
	if apply.Done(f.root) && !f.reconfigure {
		log.Info("first boot already done; use --reconfigure to change settings", "stamp", filepath.Join(f.root, apply.StampPath))
		return nil
	}
	// A serial console gets line prompts, and transliterated text if its
	// terminal cannot show UTF-8: everything this command prints there.
	// The terminal is asked while unattended answers are read and applied,
	// and only once this instance knows it will print: a console that finds
	// setup done by another one exits without asking. A terminal nobody
	// answers holds the asking instance up to a second (probeUTF8), and
	// the gateway waits for the consoles' instances.
	console := term.IsTerminal(int(in.Fd()))
	lines := console && accessible(f.accessible, in)
	out, gate := gateConsole(ctx, log, f.consoleUnits, in, out)
	var held *heldOutput
	askTerminal := func() {
		if !lines || held != nil {
			return
		}
		raw := out
		held = holdOutput(raw, func() bool { return terminalUTF8(f.charset, in, raw) })
		out = held
	}
	waitTerminal := func() {
		if held != nil {
			held.Wait()
		}
	}
	defer waitTerminal() // the held output is on the console before exit
	ifnames := f.interfaces
	if len(ifnames) == 0 {
		ifnames = detectNICs(log)
	}
	primary := "eth0"
	if len(ifnames) > 0 {
		primary = ifnames[0]
	}

	var (
		prefill answers.Answers
		notices []error
		srcs    []sources.Source
		used    map[string]string // unattended values, for scrubbing after apply
	)
	switch {
	case f.reconfigure:
		askTerminal()
		prefill = apply.Current(f.root)
	case f.noSources:
		askTerminal()
		prefill = answers.Defaults()
	default:
		// One console's instance at a time reads and applies the
		// unattended answers; the other waits here and then finds setup
		// done, rather than reading the same sources (mounting the same
		// config drive) in parallel while the gateway waits for both.
		unlock, err := lock(f.root)
		if err != nil {
			return err
		}
		release := sync.OnceFunc(unlock)
		defer release()
		if apply.Done(f.root) {
			log.Info("first boot was done on another console", "stamp", filepath.Join(f.root, apply.StampPath))
			return nil
		}
		askTerminal()
		srcs = unattendedSources(f)
		gatherStart := time.Now()
		res := sources.Gather(ctx, srcs)
		notices = append(notices, res.Errors...)
		var errs []error
		prefill, errs = answers.FromKeys(res.Values, primary)
		for _, err := range errs {
			var fe *answers.FieldError
			if errors.As(err, &fe) {
				err = i18n.Errorf("%v (from %s)", err, res.Origin[fe.Key])
			}
			notices = append(notices, err)
		}
		log.Info("unattended answers", "sources", res.Found, "keys", keysOf(res.Values), "rejected", len(notices),
			"elapsed", time.Since(gatherStart).Round(time.Millisecond).String())
		// Told in the language given unattended (ksmg.language), if any.
		p := i18n.Printer(prefill.Language)
		for _, n := range notices {
			report(f, log, out, p, i18n.Errorf("unattended answer rejected: %v", n))
		}
		used = res.Values
		if len(notices) == 0 && len(res.Values) > 0 && prefill.Validate() == nil {
			err := applyAndFinish(ctx, f, log, out, prefill, srcs, used)
			if err == nil {
				return nil
			}
			failed := i18n.Errorf("unattended setup failed, nothing was changed: %v", err)
			report(f, log, out, p, failed)
			notices = append(notices, failed)
		}
		release() // both consoles may open the wizard
	}
	if !f.reconfigure {
		startWizards(ctx, f, log)
	}
	if len(prefill.Interfaces) == 0 && len(ifnames) == 0 {
		prefill.Interface(primary)
	}

	if !console {
		return noConsole(ctx, f, log, out, prefill.Language)
	}
	// The terminal's answer about UTF-8 is read before the wizard reads it.
	waitTerminal()
	gate.ready() // the font and keymap the wizard needs
	o := tui.Options{Interfaces: ifnames, Notices: notices, In: in, Out: out, Accessible: lines}
	for {
		a, err := wizard(ctx, f, o, prefill)
		if err != nil {
			if !f.reconfigure && apply.Done(f.root) {
				fmt.Fprintln(out, i18n.Printer(prefill.Language).Sprintf("Setup was completed on another console."))
				return nil
			}
			return err
		}
		// Secrets from sources are scrubbed only once applied: a wizard
		// quit and restarted still finds them.
		err = applyLocked(ctx, f, log, out, a, srcs, used)
		if err == nil {
			return nil
		}
		failed := i18n.Errorf("setup failed, nothing was changed: %v", err)
		report(f, log, out, i18n.Printer(a.Language), failed)
		prefill, o.Notices = a, []error{failed}
	}
}

// startWizards starts the wizard on every console (--wizard-units): setup
// needs a person. The boot starts the first-boot unit on tty1 only, so an
// unattended first boot runs one first-boot process, not one per console
// that waits for the other's lock and exits (1.7 s of CPU time under TCG
// on the gateway's way). A unit already running is left as it is.
func startWizards(ctx context.Context, f flags, log *slog.Logger) {
	if len(f.wizardUnits) == 0 {
		return
	}
	if err := apply.StartUnits(ctx, f.wizardUnits...); err != nil {
		log.Warn("could not start the wizard on the other consoles", "units", f.wizardUnits, "err", err)
	}
}

// noConsole ends a first boot that needs a person where none can be
// asked. The unit's console device may have no terminal behind it: ttyS0
// on a VM without a serial port (the OVA's, and Hyper-V's default) is a
// node whose reads and writes fail (EIO). Failing there restarted the unit
// every 2 s while a person set up the appliance on tty1, each time with an
// error in the important-events log; the gateway and the getty are
// ordered after the unit, so it waits for setup on another console.
func noConsole(ctx context.Context, f flags, log *slog.Logger, out io.Writer, language string) error {
	if f.stdinConsole && !f.reconfigure {
		log.Info("no terminal on this console: waiting for setup on another one")
		return waitDone(ctx, f.root, f.pollInterval)
	}
	// Told like the rejected answers before it: in their language.
	err := i18n.Errorf("answers are incomplete and there is no console to ask on; pass complete unattended answers (see ksmg-firstboot --help)")
	report(f, log, out, i18n.Printer(language), err)
	return reported{err}
}

// wizard runs the console wizard once, ended early if another console
// completes setup meanwhile.
func wizard(ctx context.Context, f flags, o tui.Options, prefill answers.Answers) (answers.Answers, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o.Ctx = wctx
	if !f.reconfigure {
		// Another console (the wizard runs on tty1 and the serial port)
		// completing setup ends this console's wizard.
		go func() {
			if waitDone(wctx, f.root, f.pollInterval) == nil {
				cancel()
			}
		}()
	}
	return tui.Run(o, prefill)
}

// waitDone returns when first boot is done in root (checked every
// interval), or with ctx's error.
func waitDone(ctx context.Context, root string, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for !apply.Done(root) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func unattendedSources(f flags) []sources.Source {
	// Precedence: hypervisor first (what the deployer set for this VM),
	// then the guest's credentials, then a seed drive or file.
	srcs := []sources.Source{
		sources.OVFEnv{Tool: f.rpctool, Vendor: f.dmiVendor},
		sources.KVP{Path: f.kvpPool},
		sources.Credentials{Dir: f.credsDir},
		sources.SeedDrive{ByLabel: f.labelsDir},
	}
	if f.seed != "" {
		srcs = append(srcs, sources.Seed{Path: f.seed})
	}
	return srcs
}

// applyLocked applies the wizard's answers under the consoles' lock,
// unless another console completed setup meanwhile.
func applyLocked(ctx context.Context, f flags, log *slog.Logger, out io.Writer, a answers.Answers, srcs []sources.Source, used map[string]string) error {
	unlock, err := lock(f.root)
	if err != nil {
		return err
	}
	defer unlock()
	if apply.Done(f.root) && !f.reconfigure {
		fmt.Fprintln(out, i18n.Printer(a.Language).Sprintf("Setup was completed on another console."))
		return nil
	}
	return applyAndFinish(ctx, f, log, out, a, srcs, used)
}

// applyAndFinish applies a; the caller holds the consoles' lock.
func applyAndFinish(ctx context.Context, f flags, log *slog.Logger, out io.Writer, a answers.Answers, srcs []sources.Source, used map[string]string) error {
	p := i18n.Printer(a.Language)
	fmt.Fprintln(out, p.Sprintf("Applying settings..."))
	if err := apply.Apply(ctx, apply.Options{Root: f.root, Log: log, HostnameByCaller: f.hostnameUnit, GatewayStartedByCaller: f.gatewayUnit && !f.reconfigure}, a); err != nil {
		return err
	}
	// Secrets are used: remove them from guest-side sources.
	if err := sources.ScrubSecrets(ctx, srcs, sources.SecretKeys(used)); err != nil {
		report(f, log, out, p, i18n.Errorf("could not remove secrets from an unattended source: %v", err))
	}
	// Tell a Hyper-V deployer that the answers were used, so it can take
	// the secret items out of the VM's settings on the host.
	if err := (sources.KVP{Path: f.guestKVPPool}).Set(ctx, sources.DoneKey, sources.DoneValue); err != nil && !errors.Is(err, sources.ErrAbsent) {
		log.Warn("could not signal completion to the Hyper-V host", "err", err)
	}
	// The same for a vSphere deployer, through VMware Tools.
	if err := (sources.GuestInfo{Tool: f.rpctool, Vendor: f.dmiVendor}).Set(ctx, sources.GuestInfoDoneKey, sources.DoneValue); err != nil && !errors.Is(err, sources.ErrAbsent) {
		log.Warn("could not signal completion to the vSphere host", "err", err)
	}
	_ = apply.Important(f.root, time.Now(), "first-boot setup completed (host "+a.Hostname+", role "+a.Role+")")
	banner(ctx, f.root, out, p, a)
	return nil
}

// lock serialises the consoles' applies (tty1 and serial run in parallel).
func lock(root string) (func(), error) {
	dir := filepath.Join(root, "/run/lock")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return flock(filepath.Join(dir, "ksmg-firstboot.lock"))
}

// report tells the console in the reader's language; the logs (journal,
// /var/log/ksmg-important) keep English, the language of support.
func report(f flags, log *slog.Logger, out io.Writer, p *message.Printer, msg *i18n.Msg) {
	fmt.Fprintln(out, "ksmg-firstboot: "+msg.Localize(p))
	log.Warn(msg.Error())
	if err := apply.Important(f.root, time.Now(), msg.Error()); err != nil {
		log.Error("write important log", "err", err)
	}
}

func banner(ctx context.Context, root string, out io.Writer, p *message.Printer, a answers.Answers) {
	var b strings.Builder
	b.WriteString("\n" + p.Sprintf("ksmg appliance is set up.") + "\n")
	role := p.Sprintf("Control node")
	if a.Role == answers.RoleSecondary {
		role = p.Sprintf("Secondary node")
	}
	b.WriteString("  " + p.Sprintf("Host name: %s   Role: %s", a.Hostname, role) + "\n")
	for _, addr := range addresses() {
		b.WriteString("  " + p.Sprintf("Address: %s", addr) + "\n")
	}
	if a.SSHEnabled {
		b.WriteString("  " + p.Sprintf("SSH: enabled for user %s", apply.AdminUser) + "\n")
	} else {
		b.WriteString("  " + p.Sprintf("SSH: off") + "\n")
	}
	fps, err := apply.HostKeyFingerprints(root)
	if err == nil && len(fps) > 0 {
		b.WriteString("  " + p.Sprintf("SSH host key fingerprints:") + "\n")
		for _, fp := range fps {
			b.WriteString("    " + fp + "\n")
		}
	}
	fmt.Fprint(out, b.String())
}

func addresses() []string {
	var out []string
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			host := ipn.IP.String()
			if ipn.IP.To4() == nil {
				host = "[" + host + "]"
			}
			out = append(out, host)
		}
	}
	return out
}

// detectNICs lists physical-looking interfaces: not loopback, not
// virtual (bridges, veth, docker); /sys/class/net/X/device exists only
// for real (or paravirtual) hardware. First boot starts before udev is
// necessarily done with the NICs (it is not ordered after networkd), so
// it waits, up to udevWait, until udev has processed every one of them
// (its database entry exists), which is when a NIC has its final,
// predictable name (ens192, ...). The initramfs's udev has named the NICs
// of the supported hypervisors (vmxnet3, hv_netvsc) before first boot
// starts; a NIC whose driver only the root's coldplug loads (an E1000 a
// VMware admin chose) may not exist yet, so no NIC at all means waiting
// too, up to udevWait, not configuring a guessed eth0.
func detectNICs(log *slog.Logger) []string {
	start := time.Now()
	deadline := start.Add(udevWait)
	for {
		out, pending := nics()
		if (len(out) > 0 && len(pending) == 0) || time.Now().After(deadline) {
			if len(pending) > 0 {
				log.Warn("udev has not named every network interface yet; using the current names", "interfaces", pending)
			}
			if len(out) == 0 {
				log.Warn("no network interface found")
			}
			log.Info("network interfaces", "names", out, "elapsed", time.Since(start).Round(time.Millisecond).String())
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// udevWait bounds detectNICs' wait for udev.
const udevWait = 15 * time.Second

// nics returns the NICs and those of them udev has not processed yet
// (none when udev is not running at all).
func nics() (out, pending []string) {
	_, err := os.Stat("/run/udev/data")
	udev := err == nil
	ents, _ := os.ReadDir("/sys/class/net")
	for _, e := range ents {
		dir := filepath.Join("/sys/class/net", e.Name())
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		out = append(out, e.Name())
		idx, err := os.ReadFile(filepath.Join(dir, "ifindex"))
		if err != nil || !udev {
			continue
		}
		if _, err := os.Stat("/run/udev/data/n" + strings.TrimSpace(string(idx))); err != nil {
			pending = append(pending, e.Name())
		}
	}
	sort.Strings(out)
	return out, pending
}

// accessible decides line prompts: forced by the flag, or TERM=dumb, or a
// basic terminal type on a serial line (ttyS*, ttyAMA*, hvc*).
func accessible(mode string, in *os.File) bool {
	switch mode {
	case "on":
		return true
	case "off":
		return false
	}
	t := os.Getenv("TERM")
	if t == "" || t == "dumb" {
		return true
	}
	tty := terminalPath(in)
	serial := strings.HasPrefix(tty, "/dev/ttyS") || strings.HasPrefix(tty, "/dev/ttyAMA") || strings.HasPrefix(tty, "/dev/hvc")
	return serial && (t == "vt100" || t == "vt102" || t == "vt220" || t == "linux")
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k) // names only: values may be secrets
	}
	sort.Strings(out)
	return out
}
