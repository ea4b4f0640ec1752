package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Hyper-V KVP pool record layout (hv_kvp_daemon, HV_KVP_EXCHANGE_MAX_*).
const (
	KVPKeySize    = 512
	KVPValueSize  = 2048
	KVPRecordSize = KVPKeySize + KVPValueSize
)

// KVPRecord is one key/value of a pool file.
type KVPRecord struct{ Key, Value string }

// ParseKVPPool decodes a pool file: back-to-back records of a NUL-padded
// 512-byte key and a NUL-padded 2048-byte value.
func ParseKVPPool(data []byte) ([]KVPRecord, error) {
	if len(data)%KVPRecordSize != 0 {
		return nil, i18n.Errorf("KVP pool is %d bytes, not a whole number of %d-byte records", len(data), KVPRecordSize)
	}
	var recs []KVPRecord
	for off := 0; off < len(data); off += KVPRecordSize {
		k := cstr(data[off : off+KVPKeySize])
		v := cstr(data[off+KVPKeySize : off+KVPRecordSize])
		if k == "" {
			// hv_kvp_daemon leaves no holes, but a zeroed record is
			// harmless: skip it rather than fail the whole pool.
			continue
		}
		recs = append(recs, KVPRecord{Key: k, Value: v})
	}
	return recs, nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// EncodeKVPPool is the inverse of ParseKVPPool. Keys and values must fit
// with their terminating NUL.
func EncodeKVPPool(recs []KVPRecord) ([]byte, error) {
	out := make([]byte, 0, len(recs)*KVPRecordSize)
	for i, r := range recs {
		if r.Key == "" || len(r.Key) >= KVPKeySize || len(r.Value) >= KVPValueSize ||
			bytes.IndexByte([]byte(r.Key), 0) >= 0 || bytes.IndexByte([]byte(r.Value), 0) >= 0 {
			return nil, fmt.Errorf("KVP record %d does not fit the pool format (key 1-%d bytes, value <%d bytes, no NUL)", i, KVPKeySize-1, KVPValueSize)
		}
		rec := make([]byte, KVPRecordSize)
		copy(rec, r.Key)
		copy(rec[KVPKeySize:], r.Value)
		out = append(out, rec...)
	}
	return out, nil
}

// KVP reads the host-to-guest pool written by hv_kvp_daemon.
type KVP struct {
	Path string // e.g. /var/lib/hyperv/.kvp_pool_0
}

// DefaultKVPPath is pool 0, where items the host sets for the guest land.
const DefaultKVPPath = "/var/lib/hyperv/.kvp_pool_0"

// Name implements Source.
func (k KVP) Name() *i18n.Msg { return i18n.Errorf("Hyper-V KVP (%s)", k.Path) }

// Read implements Source. The last record of a key wins, as in the daemon.
func (k KVP) Read(ctx context.Context) (map[string]string, error) {
	data, err := os.ReadFile(k.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrAbsent
	}
	if err != nil {
		return nil, fmt.Errorf("read KVP pool: %w", err)
	}
	recs, err := ParseKVPPool(data)
	if err != nil {
		return nil, err // the source's name has the path
	}
	kv := map[string]string{}
	for _, r := range recs {
		kv[r.Key] = r.Value
	}
	return kv, nil
}

// Scrub rewrites the pool without the given keys (see update).
func (k KVP) Scrub(ctx context.Context, keys []string) error {
	err := k.update(func(recs []KVPRecord) ([]KVPRecord, bool) {
		n := len(recs)
		recs = slices.DeleteFunc(recs, func(r KVPRecord) bool { return slices.Contains(keys, r.Key) })
		return recs, len(recs) != n
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// update rewrites the pool with edit's records, under the same record lock
// hv_kvp_daemon takes: to a temporary file in the same directory, fsynced,
// renamed over the pool with its mode kept. edit reports whether it changed
// anything; if not, nothing is written. A missing pool is fs.ErrNotExist.
func (k KVP) update(edit func([]KVPRecord) ([]KVPRecord, bool)) error {
	unlock, err := lockFile(k.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", k.Path, err)
	}
	defer unlock()
	data, err := os.ReadFile(k.Path)
	if err != nil {
		return fmt.Errorf("read KVP pool: %w", err)
	}
	recs, err := ParseKVPPool(data)
	if err != nil {
		return fmt.Errorf("%s: %w", k.Path, err)
	}
	recs, changed := edit(recs)
	if !changed {
		return nil
	}
	out, err := EncodeKVPPool(recs)
	if err != nil {
		return err
	}
	st, err := os.Stat(k.Path)
	if err != nil {
		return fmt.Errorf("stat KVP pool: %w", err)
	}
	return atomicfile.WriteFile(k.Path, out, st.Mode().Perm())
}

// GuestKVPPath is pool 1, the guest's own items: hv_kvp_daemon hands them
// to the host, where they show as the VM's GuestExchangeItems.
const GuestKVPPath = "/var/lib/hyperv/.kvp_pool_1"

// Signal keys the guest publishes for the deployer.
const (
	// DoneKey is set to DoneValue once first boot applied its answers and
	// scrubbed the secrets: the deployer may then remove the secret items
	// it put in the VM's host-to-guest exchange.
	DoneKey   = "ksmg.firstboot"
	DoneValue = "done"
)

// Set puts key=value into the pool (replacing an earlier value), see
// update. A pool whose directory does not exist (not a Hyper-V guest) is
// ErrAbsent.
func (k KVP) Set(ctx context.Context, key, value string) error {
	if _, err := os.Stat(filepath.Dir(k.Path)); errors.Is(err, fs.ErrNotExist) {
		return ErrAbsent
	}
	if _, err := os.Stat(k.Path); errors.Is(err, fs.ErrNotExist) {
		// hv_kvp_daemon creates the pools when it starts; before that
		// the file may be missing, and creating it is what the daemon
		// would do.
		if err := atomicfile.WriteFile(k.Path, nil, 0o644); err != nil {
			return err
		}
	}
	return k.update(func(recs []KVPRecord) ([]KVPRecord, bool) {
		recs = slices.DeleteFunc(recs, func(r KVPRecord) bool { return r.Key == key })
		return append(recs, KVPRecord{Key: key, Value: value}), true
	})
}
