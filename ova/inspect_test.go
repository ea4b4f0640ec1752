package ova

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ksmg-appliance/ksmg/ova/ovatest"
)

// TestInspectRejects damages a good OVA the ways downloads and hand edits
// do; Inspect must name the member and the check that failed.
func TestInspectRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, good := buildOVA(t, dir, 96<<20+40<<10, 0)
	ms := ovatest.ReadTar(t, good)
	names := MemberNames("ksmg", "0.1.0")
	remf := func(ms []ovatest.Member) []ovatest.Member { // keep the manifest honest
		ms[ovatest.Find(ms, ".mf")].Data = ovatest.Manifest(ms)
		return ms
	}
	clone := func() []ovatest.Member {
		out := make([]ovatest.Member, len(ms))
		for i, m := range ms {
			out[i] = ovatest.Member{Name: m.Name, Data: bytes.Clone(m.Data)}
		}
		return out
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		make   func(p string)
		member string
		check  string
	}{
		{"truncated vmdk", func(p string) {
			m := clone()
			m[2].Data = m[2].Data[:len(m[2].Data)*2/3]
			ovatest.WriteTar(t, p, remf(m))
		}, names.VMDK, "vmdk"},
		{"corrupted grain", func(p string) {
			m := clone()
			m[2].Data[128*512+100] ^= 0x55
			ovatest.WriteTar(t, p, remf(m))
		}, names.VMDK, "vmdk"},
		{"wrong vmdk digest", func(p string) {
			m := clone()
			mf := m[1].Data
			i := len(mf) - 2 // last hex digit of the last line, the VMDK's
			mf[i] = "01"[(mf[i]-'0'+1)%2]
			ovatest.WriteTar(t, p, m)
		}, names.VMDK, "digest"},
		{"vmdk changed after manifest", func(p string) {
			m := clone()
			m[2].Data = append(m[2].Data[:len(m[2].Data)-512], make([]byte, 512)...) // EOS stays valid: all zero
			m[2].Data[len(m[2].Data)-600] ^= 1                                       // inside the footer's padding
			ovatest.WriteTar(t, p, m)
		}, names.VMDK, "digest"},
		{"missing manifest", func(p string) {
			m := clone()
			ovatest.WriteTar(t, p, []ovatest.Member{m[0], m[2]})
		}, names.VMDK, "member order"},
		{"missing vmdk", func(p string) {
			m := clone()
			ovatest.WriteTar(t, p, []ovatest.Member{m[0], m[1]})
		}, names.MF, "manifest"},
		{"vmdk before manifest", func(p string) {
			m := clone()
			ovatest.WriteTar(t, p, []ovatest.Member{m[0], m[2], m[1]})
		}, names.VMDK, "member order"},
		{"manifest first", func(p string) {
			m := clone()
			ovatest.WriteTar(t, p, []ovatest.Member{m[1], m[0], m[2]})
		}, names.MF, "member order"},
		{"malformed manifest line", func(p string) {
			m := clone()
			m[1].Data = bytes.Replace(m[1].Data, []byte(")= "), []byte(") = "), 1)
			ovatest.WriteTar(t, p, m)
		}, names.MF, "manifest"},
		{"unlisted member", func(p string) {
			m := clone()
			m = append(m, ovatest.Member{Name: "extra.iso", Data: []byte("x")})
			ovatest.WriteTar(t, p, m)
		}, "extra.iso", "manifest"},
		{"broken descriptor", func(p string) {
			m := clone()
			m[0].Data = bytes.Replace(m[0].Data, []byte("</Envelope>"), nil, 1)
			ovatest.WriteTar(t, p, remf(m))
		}, names.OVF, "ovf"},
		{"descriptor size mismatch", func(p string) {
			m := clone()
			m[2].Data = append(m[2].Data, make([]byte, 512)...)
			ovatest.WriteTar(t, p, remf(m))
		}, names.VMDK, "vmdk"},
		{"truncated archive", func(p string) {
			if err := os.WriteFile(p, raw[:len(raw)/2], 0o644); err != nil {
				t.Fatal(err)
			}
		}, names.VMDK, "vmdk"},
		{"not a tar", func(p string) {
			if err := os.WriteFile(p, bytes.Repeat([]byte("x"), 4096), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "", "tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.ova")
			tc.make(p)
			_, err := Inspect(context.Background(), p)
			var ce *CheckError
			if !errors.As(err, &ce) {
				t.Fatalf("Inspect = %v, want a *CheckError", err)
			}
			if ce.Member != tc.member || ce.Check != tc.check {
				t.Fatalf("failed %q/%q (%v), want %q/%q", ce.Member, ce.Check, err, tc.member, tc.check)
			}
		})
	}
}
