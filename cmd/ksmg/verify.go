package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ksmg-appliance/ksmg/sign"
)

// runVerify is `ksmg inspect --verify`: the signature of SHA256SUMS in dir
// (or next to the named SHA256SUMS), then every artifact it lists. A
// finding exits 2 naming the artifact.
func runVerify(ctx context.Context, target, keyFile string, w io.Writer, asJSON bool) error {
	if keyFile == "" {
		return &exitError{code: 2, err: errors.New("--verify needs the release public key: --key FILE or KSMG_VERIFY_KEY")}
	}
	dir := target
	if st, err := os.Stat(target); err != nil {
		return err
	} else if !st.IsDir() {
		if filepath.Base(target) != sign.SumsName {
			return &exitError{code: 2, err: fmt.Errorf("--verify %s: give the output directory or its %s", target, sign.SumsName)}
		}
		dir = filepath.Dir(target)
	}
	keys, err := sign.LoadKeyRing(keyFile)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	rep, err := sign.VerifyDir(ctx, dir, keys)
	var ae *sign.ArtifactError
	if errors.As(err, &ae) {
		if asJSON {
			_ = json.NewEncoder(w).Encode(map[string]any{"dir": dir, "ok": false, "error": err.Error()})
		}
		return &exitError{code: exitDamaged, err: fmt.Errorf("%s does not verify: %w", dir, err)}
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "%s: signed by %s\n", filepath.Join(dir, sign.SumsName), rep.Signer)
	for _, s := range rep.Verified {
		fmt.Fprintf(w, "OK  %s  %s\n", s.SHA256, s.Name)
	}
	for _, u := range rep.Unlisted {
		fmt.Fprintf(w, "not covered by %s (ignored): %s\n", sign.SumsName, u)
	}
	return nil
}
