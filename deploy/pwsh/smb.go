package pwsh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/hirochachacha/go-smb2"
)

// UNC is a parsed \\server\share\path.
type UNC struct {
	Server string
	Share  string
	Path   string // inside the share, backslash-separated, no leading backslash
}

// ParseUNC parses \\server\share\dir\file (forward slashes are accepted
// too). The path inside the share must not be empty or contain "." or ".."
// elements.
func ParseUNC(s string) (UNC, error) {
	t := strings.ReplaceAll(s, "/", `\`)
	rest, ok := strings.CutPrefix(t, `\\`)
	if !ok {
		return UNC{}, fmt.Errorf("UNC path %q: must start with \\\\server\\share", s)
	}
	parts := strings.Split(rest, `\`)
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" {
		return UNC{}, fmt.Errorf("UNC path %q: want \\\\server\\share\\path", s)
	}
	for _, p := range parts[2:] {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, `:*?"<>|`+"\x00") {
			return UNC{}, fmt.Errorf("UNC path %q: bad element %q", s, p)
		}
	}
	return UNC{Server: parts[0], Share: parts[1], Path: strings.Join(parts[2:], `\`)}, nil
}

// NewSMB returns a Copier on github.com/hirochachacha/go-smb2 (SMB 2/3
// with NTLM authentication, so it works from Linux against Windows and
// Samba).
//
// A copy goes to a hidden temporary name in the target folder, is flushed,
// and only then replaces the final name. go-smb2's rename does not replace
// an existing file, so an existing final file is removed just before the
// rename: a reader never sees a half-written disk, at worst no disk.
//
// Copies are not skipped when the target already holds a file of the same
// size: a VHDX that a VM has booted from is changed in place (same size,
// different blocks), so neither size nor a marker written at copy time can
// prove the remote disk is still the image; the deploy drivers remove a
// leftover node's folder before copying anyway.
func NewSMB(cfg SMBConfig) (Copier, error) {
	if cfg.User == "" {
		return nil, errors.New("smb: user must not be empty")
	}
	return &smbCopier{cfg: cfg}, nil
}

type smbCopier struct{ cfg SMBConfig }

// Copy implements Copier.
func (c *smbCopier) Copy(ctx context.Context, local, remote string, progress func(done, total int64)) (err error) {
	u, err := ParseUNC(remote)
	if err != nil {
		return err
	}
	in, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("smb copy: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("smb copy: %w", err)
	}

	port := c.cfg.Port
	if port == 0 {
		port = 445
	}
	addr := net.JoinHostPort(u.Server, strconv.Itoa(port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smb %s: %w", addr, err)
	}
	defer conn.Close()
	sd := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: c.cfg.User, Password: c.cfg.Password, Domain: c.cfg.Domain}}
	sess, err := sd.DialContext(ctx, conn)
	if err != nil {
		return fmt.Errorf("smb %s: log in as %s: %w", u.Server, c.cfg.User, err)
	}
	defer func() { _ = sess.Logoff() }() // best effort: the copy's outcome is known
	share, err := sess.Mount(`\\` + u.Server + `\` + u.Share)
	if err != nil {
		return fmt.Errorf("smb %s: mount share %s: %w", u.Server, u.Share, err)
	}
	defer func() { _ = share.Umount() }()

	dir, name := "", u.Path
	if i := strings.LastIndexByte(u.Path, '\\'); i >= 0 {
		dir, name = u.Path[:i], u.Path[i+1:]
	}
	// Requests run without ctx: cancellation is checked between 1 MiB
	// writes (progressReader), so a cancelled copy can still close and
	// remove its temporary file through the same session.
	fsys := share
	if dir != "" {
		if err := fsys.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("smb %s: create folder %s: %w", remote, dir, err)
		}
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := "." + name + ".ksmg-tmp-" + hex.EncodeToString(rnd[:])
	if dir != "" {
		tmp = dir + `\` + tmp
	}
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("smb %s: create %s: %w", remote, tmp, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = share.Remove(tmp)
		}
	}()
	r := &progressReader{ctx: ctx, r: in, total: st.Size(), progress: progress}
	buf := make([]byte, 1<<20)
	if _, err = io.CopyBuffer(struct{ io.Writer }{f}, r, buf); err != nil {
		return fmt.Errorf("smb copy %s to %s: %w", local, remote, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("smb %s: flush: %w", remote, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("smb %s: close: %w", remote, err)
	}
	if err = fsys.Remove(u.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("smb %s: remove the previous file: %w", remote, err)
	}
	if err = fsys.Rename(tmp, u.Path); err != nil {
		return fmt.Errorf("smb %s: rename into place: %w", remote, err)
	}
	return nil
}

// progressReader reports bytes read and stops when ctx is done.
type progressReader struct {
	ctx      context.Context
	r        io.Reader
	done     int64
	total    int64
	progress func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.progress != nil && n > 0 {
		p.progress(p.done, p.total)
	}
	return n, err
}
