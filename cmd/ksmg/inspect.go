package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ksmg-appliance/ksmg/ova"
	"github.com/ksmg-appliance/ksmg/vhdx"
)

// exitDamaged is the exit status of inspect for an image that fails a check
// (or is no image we know); 1 stays for usage and I/O errors.
const exitDamaged = 2

func newInspectCmd(a *app) *cobra.Command {
	var verify bool
	var key string
	cmd := &cobra.Command{
		Use:   "inspect FILE | inspect --verify --key KEY DIR",
		Short: "Check an OVA or VHDX image, or verify a build's signed checksums",
		Long: `inspect reads an OVA or a VHDX (told apart by content, not name) and checks it
front to back. For an OVA: member order (.ovf, .mf, disks), manifest digests, the
OVF descriptor mapped to a vSphere ConfigSpec (firmware, controller, NIC,
properties) and every VMDK's stream structure, with every grain decompressed.
A damaged image exits with status 2, naming the failing member and check.

With --verify, DIR is a build's output directory (or its SHA256SUMS): the
OpenPGP signature SHA256SUMS.asc must verify with the public key in --key
(env KSMG_VERIFY_KEY), and every artifact SHA256SUMS lists must be there
with that SHA-256. A missing or changed artifact, or a bad signature,
exits 2 naming the file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if verify {
				if key == "" {
					key = os.Getenv("KSMG_VERIFY_KEY")
				}
				return runVerify(cmd.Context(), args[0], key, cmd.OutOrStdout(), a.json)
			}
			return runInspect(cmd.Context(), args[0], cmd.OutOrStdout(), a.json)
		},
	}
	cmd.Flags().BoolVar(&verify, "verify", false, "verify DIR's SHA256SUMS signature and every artifact's checksum")
	cmd.Flags().StringVar(&key, "key", "", "OpenPGP public key (file) that signed the build; env KSMG_VERIFY_KEY")
	return cmd
}

// inspectResult is the --json output.
type inspectResult struct {
	Path   string       `json:"path"`
	Format string       `json:"format"`
	OK     bool         `json:"ok"`
	Member string       `json:"member,omitempty"`
	Check  string       `json:"check,omitempty"`
	Error  string       `json:"error,omitempty"`
	OVA    *ova.Report  `json:"ova,omitempty"`
	VHDX   *vhdx.Report `json:"vhdx,omitempty"`
}

func runInspect(ctx context.Context, path string, w io.Writer, asJSON bool) error {
	format, err := detectFormat(path)
	if err != nil {
		return err
	}
	res := inspectResult{Path: path, Format: format}
	switch format {
	case "ova":
		res.OVA, err = ova.Inspect(ctx, path)
		var ce *ova.CheckError
		if errors.As(err, &ce) {
			res.Member, res.Check = ce.Member, ce.Check
		}
	case "vhdx":
		res.VHDX, err = vhdx.Inspect(path)
		var fe *vhdx.FormatError
		if errors.As(err, &fe) {
			res.Check = fe.Structure
		}
	}
	if err != nil {
		if res.Check == "" { // not a finding about the image: I/O, cancellation
			return err
		}
		res.Error = err.Error()
		if asJSON {
			_ = json.NewEncoder(w).Encode(res)
		}
		return &exitError{code: exitDamaged, err: fmt.Errorf("%s is damaged: %w", path, err)}
	}
	res.OK = true
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if res.OVA != nil {
		_, err = io.WriteString(w, res.OVA.Summary())
	} else {
		_, err = io.WriteString(w, res.VHDX.String())
	}
	return err
}

// detectFormat tells the image formats apart by their first bytes: a ustar
// header ("ustar" at offset 257) is an OVA, the signature "vhdxfile" a VHDX.
func detectFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 512)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	b = b[:n]
	switch {
	case len(b) >= 8 && string(b[:8]) == "vhdxfile":
		return "vhdx", nil
	case len(b) >= 262 && string(b[257:262]) == "ustar":
		return "ova", nil
	}
	return "", &exitError{code: exitDamaged, err: fmt.Errorf("%s: neither an OVA (ustar archive) nor a VHDX (signature \"vhdxfile\")", path)}
}
