// Package boottest boots an appliance disk in QEMU the way a customer's
// hypervisor would and reports what the guest showed: UEFI with Secure Boot
// on (OVMF with Microsoft keys), and for raw, qcow2 and VMDK disks VMware's
// paravirtual devices: a vmxnet3 NIC and a pvscsi controller, so the
// drivers in the initramfs are really exercised (QEMU has no Hyper-V VMBus
// devices; VHDX disks boot with AHCI and virtio-net). The guest's console status
// line (printed by the image's ksmg-console-status unit) and the SMTP banner
// on a forwarded port are the observable results.
//
// Two QEMU facts shape the command line:
//   - Debian's OVMF has no PVSCSI boot driver, so the firmware cannot read a
//     boot disk on pvscsi. The disk is on the q35 AHCI controller and the
//     pvscsi controller carries a small scratch disk that the guest's
//     vmw_pvscsi driver has to bind.
//   - QEMU 7.2's TCG mis-emulates CMPXCHG16B (the flags come out wrong),
//     which crashes Linux 6.12 in its SLUB allocator within a minute. The
//     guest CPU is qemu64 without cx16; Debian's x86-64 baseline does not
//     need it.
//
// QEMU is driven directly through os/exec: the libraries considered
// (digitalocean/go-qemu, which speaks QMP to an already running QEMU) add
// nothing for a boot-and-watch test and do not build the command line.
package boottest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Firmware files of the Debian ovmf package: the 4M build with Secure Boot
// and the Microsoft keys (UEFI CA 2011, which signs Debian's shim) enrolled.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// StatusPrefix starts the machine-readable line the image prints on its
// console once systemd has finished starting up.
const StatusPrefix = "KSMG-STATUS "

// DefaultBannerGrace is how long Run waits for the SMTP (and SSH) banner
// after the guest printed its status line (startup finished), unless
// Options.BannerGrace says otherwise.
const DefaultBannerGrace = 2 * time.Minute

// Options describe one boot.
type Options struct {
	Disk   string // path of the disk image
	Format string // "raw", "vmdk", "vhdx" or "qcow2"; "" means raw
	// Credentials are passed as SMBIOS type 11 io.systemd.credential strings,
	// the way systemd reads them at boot (names must not contain '=').
	Credentials map[string]string
	// Serial receives the guest's serial console as it arrives (carriage
	// returns dropped; a prompt without a newline too); may be nil.
	Serial io.Writer

	Memory  int           // MiB; 0 means 2048
	CPUs    int           // 0 means 2
	Timeout time.Duration // whole boot; 0 means 10 minutes
	// NoSMTP skips waiting for the SMTP banner on guest port 25.
	NoSMTP bool
	// GuestAddr is the guest's IPv4 address the port forwards point at; ""
	// means the address QEMU's DHCP server hands out. A guest configured
	// with a static address in QEMU's user network (10.0.2.0/24, gateway
	// 10.0.2.2, DNS 10.0.2.3) is reached only there.
	GuestAddr string
	// SSH also waits for the SSH server's banner on guest port 22.
	SSH bool
	// SSHKey is a private key file whose public half the first-boot
	// answers authorize; with it and Guest, Run logs in once the banners
	// are up and calls Guest while the VM runs (SSHUser, default admin).
	SSHKey  string
	SSHUser string
	Guest   func(ctx context.Context, g *Guest) error
	// Persist lets the guest write to Disk; by default writes go to a
	// throw-away overlay so a test never changes a built image.
	Persist bool
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
	// BannerGrace is how long to wait for the banners once startup has
	// finished; 0 means DefaultBannerGrace.
	BannerGrace time.Duration
	// Hold, if set, is called once the guest is up (status line and
	// banners seen) while it keeps running, e.g. to provision it over the
	// forwarded SSH port; the guest is stopped when Hold returns, and its
	// error is Run's. Its context ends if QEMU exits; Timeout does not
	// count Hold's time.
	Hold func(ctx context.Context, res Result) error
}

// Result is what the boot showed.
type Result struct {
	SecureBoot   bool              // the kernel said "secureboot: Secure boot enabled"
	Status       map[string]string // fields of the console status line (state, failed, var_bytes, disk_bytes, ...)
	StatusLine   string            // the raw status line
	Banner       string            // first line the guest's port 25 sent
	ToBanner     time.Duration     // from power-on (QEMU start) to the SMTP banner
	ToStatus     time.Duration     // from power-on to the console status line
	SMTPPort     int               // host port forwarded to guest port 25
	SSHPort      int               // host port forwarded to guest port 22 (with Options.SSH)
	SSHBanner    string            // first line of guest port 22 (with Options.SSH)
	SerialTail   []string          // last lines of the serial console
	Panicked     bool              // the guest kernel panicked
	Retried      bool              // the first boot panicked; this is the second
	QEMUCommand  []string
	statusParsed bool
}

// State is the systemd state the guest reported ("running", "degraded", ...).
func (r *Result) State() string { return r.Status["state"] }

// Drivers lists the hypervisor drivers the guest had loaded (status field
// "drivers", comma separated).
func (r *Result) Drivers() []string {
	if d := r.Status["drivers"]; d != "" && d != "none" {
		return strings.Split(d, ",")
	}
	return nil
}

// Int returns a numeric field of the status line.
func (r *Result) Int(key string) (int64, error) {
	v, ok := r.Status[key]
	if !ok {
		return 0, fmt.Errorf("status line has no %q field: %q", key, r.StatusLine)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("status field %s=%q: %w", key, v, err)
	}
	return n, nil
}

var secureBootRE = regexp.MustCompile(`secureboot: Secure boot enabled`)

// ParseStatus parses "KSMG-STATUS k=v k=v ..." (values without spaces).
func ParseStatus(line string) (map[string]string, bool) {
	i := strings.Index(line, StatusPrefix)
	if i < 0 {
		return nil, false
	}
	m := map[string]string{}
	for _, f := range strings.Fields(line[i+len(StatusPrefix):]) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		m[k] = v
	}
	return m, true
}

// Run boots opts.Disk and returns once the guest printed its status line and
// (unless NoSMTP) answered on port 25, or with an error on timeout, early
// QEMU exit or cancellation. The Result is filled as far as the boot got,
// also when an error is returned.
//
// A guest kernel panic ends the boot at once. QEMU 7.2's TCG occasionally
// crashes Linux 6.12 (seen once in about fifteen boots of an image that
// otherwise booted, in the slab allocator's get_random_u32), so after a
// panic Run boots once more; a second panic is returned as the error.
func Run(ctx context.Context, opts Options) (*Result, error) {
	res, err := runOnce(ctx, opts)
	if err != nil && res.Panicked && ctx.Err() == nil {
		if opts.Serial != nil {
			fmt.Fprintf(opts.Serial, "boottest: guest kernel panicked (%v); booting once more\n", err)
		}
		res, err = runOnce(ctx, opts)
		res.Retried = true
	}
	return res, err
}

//nolint:gocyclo // one QEMU run: start, watch the serial console, hold, stop; its state (process, channels, timers) is shared by every step
func runOnce(ctx context.Context, opts Options) (*Result, error) {
	res := &Result{}
	if opts.Disk == "" {
		return res, errors.New("boottest: no disk given")
	}
	if _, err := os.Stat(opts.Disk); err != nil {
		return res, fmt.Errorf("boottest: disk: %w", err)
	}
	format := opts.Format
	if format == "" {
		format = "raw"
	}
	switch format {
	case "raw", "vmdk", "vhdx", "qcow2":
	default:
		return res, fmt.Errorf("boottest: unknown disk format %q (want raw, vmdk, vhdx or qcow2)", format)
	}
	if opts.Memory == 0 {
		opts.Memory = 2048
	}
	if opts.CPUs == 0 {
		opts.CPUs = 2
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.BannerGrace == 0 {
		opts.BannerGrace = DefaultBannerGrace
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return res, fmt.Errorf("boottest: qemu-system-x86_64 not installed (Debian package qemu-system-x86): %w", err)
	}
	for _, f := range []string{OVMFCode, OVMFVars} {
		if _, err := os.Stat(f); err != nil {
			return res, fmt.Errorf("boottest: firmware (Debian package ovmf): %w", err)
		}
	}

	tmp, err := os.MkdirTemp("", "ksmg-boottest-")
	if err != nil {
		return res, fmt.Errorf("boottest: %w", err)
	}
	defer os.RemoveAll(tmp)
	// Each boot gets its own copy of the variable store: Secure Boot keys
	// are enrolled in it and the firmware writes boot entries to it.
	vars := filepath.Join(tmp, "OVMF_VARS.fd")
	if err := copyFile(OVMFVars, vars); err != nil {
		return res, fmt.Errorf("boottest: firmware variables: %w", err)
	}

	port := 0
	if !opts.NoSMTP {
		if port, err = freePort(); err != nil {
			return res, fmt.Errorf("boottest: pick a host port: %w", err)
		}
	}
	res.SMTPPort = port
	sshPort := 0
	if opts.SSH {
		if sshPort, err = freePort(); err != nil {
			return res, fmt.Errorf("boottest: pick a host port: %w", err)
		}
	}
	res.SSHPort = sshPort
	args, err := qemuArgs(opts, format, vars, port, sshPort)
	if err != nil {
		return res, err
	}
	res.QEMUCommand = append([]string{qemu}, args...)

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("boottest: %w", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("boottest: start qemu: %w", err)
	}
	exited := make(chan error, 1)

	var mu sync.Mutex
	statusSeen := make(chan struct{})
	panicked := make(chan struct{})
	serialDone := make(chan struct{})
	go func() {
		defer close(serialDone)
		once := sync.Once{}
		copySerial(stdout, opts.Serial, func(line string) {
			mu.Lock()
			defer mu.Unlock()
			res.SerialTail = append(res.SerialTail, line)
			if len(res.SerialTail) > 60 {
				res.SerialTail = res.SerialTail[len(res.SerialTail)-60:]
			}
			if secureBootRE.MatchString(line) {
				res.SecureBoot = true
			}
			if strings.Contains(line, "Kernel panic - not syncing") && !res.Panicked {
				res.Panicked = true
				close(panicked)
			}
			if m, ok := ParseStatus(line); ok && !res.statusParsed {
				_, rest, _ := strings.Cut(line, StatusPrefix)
				res.Status, res.StatusLine, res.statusParsed = m, strings.TrimSpace(StatusPrefix+rest), true
				res.ToStatus = time.Since(start)
				once.Do(func() { close(statusSeen) })
			}
		})
	}()
	go func() {
		<-serialDone
		exited <- cmd.Wait()
	}()

	bannerSeen := make(chan struct{})
	if opts.NoSMTP {
		close(bannerSeen)
	} else {
		go func() {
			b, err := waitBanner(ctx, port)
			if err != nil {
				return
			}
			mu.Lock()
			res.Banner, res.ToBanner = b, time.Since(start)
			mu.Unlock()
			close(bannerSeen)
		}()
	}

	stop := func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-exited //nolint:errcheck // after a kill, the exit status says nothing
	}
	waitFor := func(ch chan struct{}, what string) error {
		select {
		case <-ch:
			return nil
		case <-panicked:
			return fmt.Errorf("boottest: guest kernel panicked before %s", what)
		case err := <-exited:
			exited <- err // let stop() see it
			return fmt.Errorf("boottest: qemu exited before %s: %w: %s", what, err, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			return fmt.Errorf("boottest: no %s within %s: %w", what, opts.Timeout, ctx.Err())
		}
	}
	err = waitFor(statusSeen, "console status line")
	if err == nil {
		// Startup is finished once the status line is out: a gateway that
		// has not answered two minutes later is not going to.
		bctx, bcancel := context.WithTimeout(ctx, opts.BannerGrace)
		select {
		case <-panicked:
			err = errors.New("boottest: guest kernel panicked before the SMTP banner")
		case <-bannerSeen:
		case e := <-exited:
			exited <- e
			err = fmt.Errorf("boottest: qemu exited before the SMTP banner: %w: %s", e, strings.TrimSpace(stderr.String()))
		case <-bctx.Done():
			err = fmt.Errorf("boottest: no SMTP banner on guest port 25 within %s after startup finished (status: %s)", opts.BannerGrace, res.StatusLine)
		}
		if err == nil && opts.SSH {
			b, serr := waitBanner(bctx, sshPort)
			mu.Lock()
			res.SSHBanner = b
			mu.Unlock()
			if serr != nil {
				err = fmt.Errorf("boottest: no SSH banner on guest port 22 within %s after startup finished (status: %s)", opts.BannerGrace, res.StatusLine)
			}
		}
		bcancel()
		if err == nil && opts.Guest != nil {
			err = guest(ctx, opts, sshPort)
		}
	}
	if err == nil && opts.Hold != nil {
		err = hold(parent, opts.Hold, exited, func() Result {
			mu.Lock()
			defer mu.Unlock()
			return *res
		})
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		return res, fmt.Errorf("%w; last console lines:\n%s", err, strings.Join(res.SerialTail, "\n"))
	}
	return res, nil
}

// hold runs fn while the guest keeps running; its context ends if QEMU
// exits (the exit is passed on to stop).
func hold(ctx context.Context, fn func(context.Context, Result) error, exited chan error, snapshot func() Result) error {
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	done, finished := make(chan struct{}), make(chan struct{})
	var qemuErr error
	var exitedEarly bool
	go func() {
		defer close(finished)
		select {
		case e := <-exited:
			qemuErr, exitedEarly = e, true
			exited <- e // let stop() see it
			hcancel()
		case <-done:
		}
	}()
	err := fn(hctx, snapshot())
	close(done)
	<-finished
	if exitedEarly {
		return fmt.Errorf("boottest: qemu exited (%w) while the guest was held: %w", qemuErr, err)
	}
	return err
}

// guest logs in and hands the running guest to opts.Guest.
func guest(ctx context.Context, opts Options, port int) error {
	if !opts.SSH || opts.SSHKey == "" {
		return errors.New("boottest: Guest needs SSH and SSHKey")
	}
	g, err := newGuest(opts, port)
	if err != nil {
		return err
	}
	if err := opts.Guest(ctx, g); err != nil {
		return fmt.Errorf("boottest: in the guest: %w", err)
	}
	return nil
}

func qemuArgs(opts Options, format, vars string, port, sshPort int) ([]string, error) {
	args := []string{
		"-nodefaults", "-no-user-config",
		// TCG: KVM guests hang on the CI machines; q35 with SMM is what
		// OVMF's Secure Boot build requires.
		"-machine", "q35,smm=on,accel=tcg",
		"-cpu", "qemu64,-cx16", // see the package documentation
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-m", strconv.Itoa(opts.Memory),
		"-smp", strconv.Itoa(opts.CPUs),
		"-display", "none", "-vga", "none",
		"-serial", "stdio", "-monitor", "none",
		"-no-reboot",
	}
	snapshot := "on"
	if opts.Persist {
		snapshot = "off"
	}
	drive := fmt.Sprintf("if=none,id=disk0,format=%s,snapshot=%s,file=%s", format, snapshot, qemuEscape(opts.Disk))
	args = append(args, "-drive", drive, "-device", "ide-hd,drive=disk0,bus=ide.0,bootindex=0")
	switch format {
	case "vhdx":
		// Hyper-V's storage and network (storvsc, netvsc) need a VMBus host
		// QEMU does not have; the cloud kernel's virtio-net stands in (it has
		// no e1000e).
		args = append(args, "-device", "virtio-net-pci,netdev=n0,romfile=")
	default:
		args = append(args,
			"-device", "pvscsi,id=scsi0",
			"-blockdev", "null-co,node-name=scratch,size=67108864,read-zeroes=on",
			"-device", "scsi-hd,drive=scratch,bus=scsi0.0",
			// romfile=: no iPXE option ROM, the firmware boots the disk only.
			"-device", "vmxnet3,netdev=n0,romfile=")
	}
	netdev := "user,id=n0"
	if port != 0 {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-%s:25", port, opts.GuestAddr)
	}
	if sshPort != 0 {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-%s:22", sshPort, opts.GuestAddr)
	}
	args = append(args, "-netdev", netdev)
	names := make([]string, 0, len(opts.Credentials))
	for k := range opts.Credentials {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if k == "" || strings.ContainsAny(k, "=,\n") {
			return nil, fmt.Errorf("boottest: credential name %q: must be non-empty without '=', ',' or newline", k)
		}
		v := opts.Credentials[k]
		cred := "io.systemd.credential:" + k + "=" + v
		if strings.ContainsAny(v, "\n,") || !utf8.ValidString(v) {
			// Multi-line or binary values (unit drop-ins, keys) go base64.
			cred = "io.systemd.credential.binary:" + k + "=" + base64.StdEncoding.EncodeToString([]byte(v))
		}
		args = append(args, "-smbios", "type=11,value="+qemuEscape(cred))
	}
	return append(args, opts.ExtraArgs...), nil
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// waitBanner connects to the forwarded port until a line arrives. QEMU's
// user network accepts the host connection before the guest listens and
// then closes it, so an empty read means "not yet".
func waitBanner(ctx context.Context, port int) (string, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		if line, err := readBanner(ctx, addr); err == nil && line != "" {
			return line, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func readBanner(ctx context.Context, addr string) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	_, _ = io.WriteString(c, "QUIT\r\n")
	return strings.TrimRight(line, "\r\n"), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copySerial copies the serial console from r to w (if not nil) as the
// bytes arrive, not line by line: a prompt that waits for an answer ends
// without a newline, and a line reader would hold it back until the guest
// printed its next line (minutes on a quiet console: that timed out a CI
// run). Carriage returns are dropped. onLine sees every whole line, and
// the unterminated last one at the end.
func copySerial(r io.Reader, w io.Writer, onLine func(string)) {
	var partial []byte
	buf := make([]byte, 32*1024)
	for {
		n, rerr := r.Read(buf)
		chunk := bytes.ReplaceAll(buf[:n], []byte("\r"), nil)
		if w != nil && len(chunk) > 0 {
			_, _ = w.Write(chunk)
		}
		partial = append(partial, chunk...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			onLine(string(partial[:i]))
			partial = partial[i+1:]
		}
		if len(partial) > 1024*1024 {
			partial = partial[len(partial)-64*1024:] // a runaway line: keep its end
		}
		if rerr != nil {
			if len(partial) > 0 {
				onLine(string(partial))
			}
			return
		}
	}
}
