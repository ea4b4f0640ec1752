package sources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// Credentials reads systemd credentials from $CREDENTIALS_DIRECTORY: the
// unit imports ksmg.* (ImportCredential=ksmg.*), which systemd fills from
// SMBIOS type 11 strings (io.systemd.credential:ksmg.hostname=gw1), the
// kernel command line (systemd.set_credential=) or LoadCredential=.
type Credentials struct {
	Dir string // "" means $CREDENTIALS_DIRECTORY
}

// Name implements Source.
func (Credentials) Name() *i18n.Msg { return i18n.Errorf("systemd credentials") }

// Read implements Source. One trailing newline is dropped, as a value
// passed through a file usually has one.
func (c Credentials) Read(ctx context.Context) (map[string]string, error) {
	dir := c.Dir
	if dir == "" {
		dir = os.Getenv("CREDENTIALS_DIRECTORY")
	}
	if dir == "" {
		return nil, ErrAbsent
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrAbsent
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials directory: %w", err)
	}
	kv := map[string]string{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), answers.Prefix) || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read credential %s: %w", e.Name(), err)
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		kv[e.Name()] = v
	}
	return kv, nil
}
