package ova

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/ova/vmdk"
)

// CheckError names the member of the archive and the check that failed.
type CheckError struct {
	Member string // "" for the archive as a whole
	Check  string // "tar", "member order", "manifest", "digest", "ovf", "vmdk", ...
	Err    error
}

func (e *CheckError) Error() string {
	if e.Member == "" {
		return fmt.Sprintf("%s check failed: %v", e.Check, e.Err)
	}
	return fmt.Sprintf("%s: %s check failed: %v", e.Member, e.Check, e.Err)
}
func (e *CheckError) Unwrap() error { return e.Err }

// Member is one file of the archive.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// VM is the OVF descriptor as vSphere would create the VM from it.
type VM struct {
	Name            string            `json:"name"`
	GuestID         string            `json:"guestId"`
	HardwareVersion string            `json:"hardwareVersion"`
	Firmware        string            `json:"firmware"`
	SecureBoot      bool              `json:"secureBoot"`
	CPUs            int32             `json:"cpus"`
	MemoryMiB       int64             `json:"memoryMiB"`
	Controllers     []string          `json:"controllers"`
	NICs            []string          `json:"nics"`
	Disks           []Disk            `json:"disks"`
	ExtraConfig     map[string]string `json:"extraConfig"`
	Transport       string            `json:"transport"`
	EULA            bool              `json:"eula"`
	Product         string            `json:"product"`
	Version         string            `json:"version"`
	Properties      []VMProperty      `json:"properties"`
}

// Disk is one disk of the descriptor.
type Disk struct {
	File     string `json:"file"`
	Capacity int64  `json:"capacity"`
	Format   string `json:"format"`
}

// VMProperty is a vApp property as vSphere maps it.
type VMProperty struct {
	Key      string `json:"key"`
	Type     string `json:"type"`
	Default  string `json:"default"`
	Category string `json:"category"`
	Label    string `json:"label"`
}

// Report is what Inspect found.
type Report struct {
	Path    string                  `json:"path"`
	Members []Member                `json:"members"`
	VM      VM                      `json:"vm"`
	Disks   map[string]*vmdk.Report `json:"vmdk"`
}

var mfLine = regexp.MustCompile(`^SHA256\(([^()]+)\)= ([0-9a-f]{64})$`)

// Inspect reads the OVA at p front to back, checking the member order, the
// manifest digests, the OVF descriptor (parsed with govmomi and mapped to a
// ConfigSpec) and the structure of every VMDK, decompressing every grain.
// Any failure is a *CheckError naming the member and the check.
func Inspect(ctx context.Context, p string) (*Report, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	defer f.Close()
	rep := &Report{Path: p, Disks: map[string]*vmdk.Report{}}
	fail := func(member, check string, err error) (*Report, error) {
		return nil, &CheckError{Member: member, Check: check, Err: err}
	}

	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	var ovfData, mfData []byte
	var ovfName string
	sums := map[string]string{}
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			if i == 0 {
				return fail("", "tar", errors.New("empty archive"))
			}
			break
		}
		if err != nil {
			return fail("", "tar", fmt.Errorf("member %d: %w", i+1, err))
		}
		name := h.Name
		if h.Typeflag != tar.TypeReg || strings.Contains(name, "/") || name == "" {
			return fail(name, "tar", fmt.Errorf("member %d is not a plain file at the top level", i+1))
		}
		if _, dup := sums[name]; dup {
			return fail(name, "tar", errors.New("member appears twice"))
		}
		ext := strings.ToLower(path.Ext(name))
		switch {
		case i == 0 && ext != ".ovf":
			return fail(name, "member order", errors.New("first member must be the .ovf descriptor"))
		case i == 1 && ext != ".mf":
			return fail(name, "member order", errors.New("second member must be the .mf manifest"))
		case i > 1 && (ext == ".ovf" || ext == ".mf"):
			return fail(name, "member order", fmt.Errorf("%s member in position %d", ext, i+1))
		}
		hs := sha256.New()
		r := io.TeeReader(tr, hs)
		switch ext {
		case ".ovf", ".mf":
			b, err := io.ReadAll(io.LimitReader(r, 16<<20))
			if err != nil {
				return fail(name, "tar", err)
			}
			if ext == ".ovf" {
				ovfData, ovfName = b, name
			} else {
				mfData = b
			}
		case ".vmdk":
			vr, err := vmdk.Verify(r)
			if err != nil {
				return fail(name, "vmdk", err)
			}
			rep.Disks[name] = vr
		default:
			if _, err := io.Copy(io.Discard, r); err != nil {
				return fail(name, "tar", err)
			}
		}
		sums[name] = hex.EncodeToString(hs.Sum(nil))
		rep.Members = append(rep.Members, Member{Name: name, Size: h.Size, SHA256: sums[name]})
	}
	if mfData == nil {
		return fail("", "member order", errors.New("no .mf manifest in the archive"))
	}
	mfName := rep.Members[1].Name
	if want := strings.TrimSuffix(ovfName, path.Ext(ovfName)) + ".mf"; mfName != want {
		return fail(mfName, "manifest", fmt.Errorf("manifest must be named %s after the descriptor", want))
	}

	if err := checkManifest(mfName, mfData, sums, rep.Members); err != nil {
		return nil, err
	}

	vm, err := mapOVF(ovfData, rep)
	if err != nil {
		return fail(ovfName, "ovf", err)
	}
	rep.VM = *vm
	return rep, nil
}

// checkManifest holds the manifest against the members' digests: every line
// well-formed and right, every member but the manifest listed.
func checkManifest(mfName string, mfData []byte, sums map[string]string, members []Member) error {
	fail := func(member, check string, err error) error {
		return &CheckError{Member: member, Check: check, Err: err}
	}
	listed := map[string]bool{}
	for n, line := range strings.Split(strings.TrimRight(string(mfData), "\n"), "\n") {
		m := mfLine.FindStringSubmatch(line)
		if m == nil {
			return fail(mfName, "manifest", fmt.Errorf("line %d %q: want \"SHA256(name)= <64 hex digits>\"", n+1, line))
		}
		got, ok := sums[m[1]]
		if !ok {
			return fail(mfName, "manifest", fmt.Errorf("line %d lists %s, which is not in the archive", n+1, m[1]))
		}
		if got != m[2] {
			return fail(m[1], "digest", fmt.Errorf("SHA-256 is %s, the manifest says %s", got, m[2]))
		}
		listed[m[1]] = true
	}
	for _, m := range members {
		if m.Name != mfName && !listed[m.Name] {
			return fail(m.Name, "manifest", errors.New("member is not listed in the manifest"))
		}
	}

	return nil
}

func mapOVF(data []byte, rep *Report) (*VM, error) {
	env, err := ovf.Unmarshal(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if env.VirtualSystem == nil {
		return nil, errors.New("no VirtualSystem")
	}
	sizes := map[string]int64{}
	for _, m := range rep.Members {
		sizes[m.Name] = m.Size
	}
	files := map[string]string{}
	for _, ref := range env.References {
		size, ok := sizes[ref.Href]
		if !ok {
			return nil, fmt.Errorf("OVF References: file %s is not in the archive", ref.Href)
		}
		if ref.Size != 0 && int64(ref.Size) != size {
			return nil, fmt.Errorf("OVF References: %s has ovf:size %d but is %d bytes", ref.Href, ref.Size, size)
		}
		files[ref.ID] = ref.Href
	}
	spec, err := env.ToConfigSpec()
	if err != nil {
		return nil, fmt.Errorf("map to ConfigSpec: %w", err)
	}
	vs := env.VirtualSystem
	vm := &VM{
		Name:            spec.Name,
		GuestID:         spec.GuestId,
		HardwareVersion: spec.Version,
		Firmware:        spec.Firmware,
		CPUs:            spec.NumCPUs,
		MemoryMiB:       spec.MemoryMB,
		ExtraConfig:     map[string]string{},
		EULA:            len(vs.Eula) > 0 && strings.TrimSpace(vs.Eula[0].License) != "",
	}
	if spec.BootOptions != nil && spec.BootOptions.EfiSecureBootEnabled != nil {
		vm.SecureBoot = *spec.BootOptions.EfiSecureBootEnabled
	}
	if len(vs.VirtualHardware) > 0 && vs.VirtualHardware[0].Transport != nil {
		vm.Transport = *vs.VirtualHardware[0].Transport
	}
	for _, o := range spec.ExtraConfig {
		if v := o.GetOptionValue(); v != nil {
			vm.ExtraConfig[v.Key] = fmt.Sprint(v.Value)
		}
	}
	for _, dc := range spec.DeviceChange {
		vm.addDevice(dc.GetVirtualDeviceConfigSpec().Device)
	}
	if err := vm.mapDisks(env, files, rep); err != nil {
		return nil, err
	}
	if len(vs.Product) > 0 {
		vm.Product, vm.Version = vs.Product[0].Product, vs.Product[0].Version
	}
	if spec.VAppConfig != nil {
		if va := spec.VAppConfig.GetVmConfigSpec(); va != nil {
			for _, p := range va.Property {
				if p.Info == nil {
					continue
				}
				vm.Properties = append(vm.Properties, VMProperty{
					Key: p.Info.Id, Type: p.Info.Type, Default: p.Info.DefaultValue,
					Category: p.Info.Category, Label: p.Info.Label,
				})
			}
		}
	}
	sort.Strings(vm.Controllers)
	return vm, nil
}

// addDevice records a device of the ConfigSpec under the name the report
// uses for its kind; other kinds are not reported.
func (vm *VM) addDevice(dev types.BaseVirtualDevice) {
	switch d := dev.(type) {
	case *types.ParaVirtualSCSIController:
		vm.Controllers = append(vm.Controllers, "pvscsi")
	case *types.VirtualLsiLogicController:
		vm.Controllers = append(vm.Controllers, "lsilogic")
	case *types.VirtualLsiLogicSASController:
		vm.Controllers = append(vm.Controllers, "lsilogic-sas")
	case *types.VirtualBusLogicController:
		vm.Controllers = append(vm.Controllers, "buslogic")
	case *types.VirtualIDEController:
		vm.Controllers = append(vm.Controllers, "ide")
	case *types.VirtualAHCIController:
		vm.Controllers = append(vm.Controllers, "sata")
	case *types.VirtualNVMEController:
		vm.Controllers = append(vm.Controllers, "nvme")
	case *types.VirtualVmxnet3:
		vm.NICs = append(vm.NICs, "vmxnet3")
	case *types.VirtualE1000:
		vm.NICs = append(vm.NICs, "e1000")
	case *types.VirtualE1000e:
		vm.NICs = append(vm.NICs, "e1000e")
	case *types.VirtualDisk:
		vm.Disks = append(vm.Disks, Disk{Capacity: d.CapacityInBytes})
	}
}

// mapDisks takes each disk's file and format from the DiskSection, in the
// ConfigSpec's order, and refuses a VMDK larger than the disk declared.
func (vm *VM) mapDisks(env *ovf.Envelope, files map[string]string, rep *Report) error {
	if env.Disk == nil {
		return nil
	}
	for i, d := range env.Disk.Disks {
		if i >= len(vm.Disks) {
			break
		}
		ref := ""
		if d.FileRef != nil {
			ref = files[*d.FileRef]
		}
		vm.Disks[i].File = ref
		if d.Format != nil {
			vm.Disks[i].Format = *d.Format
		}
		if vr := rep.Disks[ref]; vr != nil && vr.Capacity > vm.Disks[i].Capacity {
			return fmt.Errorf("disk %s: VMDK capacity %d exceeds the descriptor's %d", ref, vr.Capacity, vm.Disks[i].Capacity)
		}
	}
	return nil
}

// Summary renders the report for a person.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "OVA %s: OK\n", r.Path)
	for i, m := range r.Members {
		fmt.Fprintf(&b, "  member %d  %-34s %12d bytes  sha256 %s…\n", i+1, m.Name, m.Size, m.SHA256[:16])
	}
	vm := r.VM
	fmt.Fprintf(&b, "VM %q: %s %s, guest %s, hardware %s\n", vm.Name, vm.Product, vm.Version, vm.GuestID, vm.HardwareVersion)
	fmt.Fprintf(&b, "  firmware %s, secure boot %t, %d vCPU, %d MiB\n", vm.Firmware, vm.SecureBoot, vm.CPUs, vm.MemoryMiB)
	fmt.Fprintf(&b, "  controllers %s, NICs %s\n", strings.Join(vm.Controllers, ","), strings.Join(vm.NICs, ","))
	for _, d := range vm.Disks {
		fmt.Fprintf(&b, "  disk %s: %d bytes\n", d.File, d.Capacity)
	}
	keys := make([]string, 0, len(vm.ExtraConfig))
	for k := range vm.ExtraConfig {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  extraConfig %s = %s\n", k, vm.ExtraConfig[k])
	}
	fmt.Fprintf(&b, "  EULA %t, %d properties via %s\n", vm.EULA, len(vm.Properties), vm.Transport)
	for _, p := range vm.Properties {
		fmt.Fprintf(&b, "    %-30s %-28s default %q\n", p.Key, p.Type, p.Default)
	}
	names := make([]string, 0, len(r.Disks))
	for n := range r.Disks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := r.Disks[n]
		fmt.Fprintf(&b, "VMDK %s: %s, CID %s, capacity %d, %d grains (%d bytes compressed), %d grain tables, GD %d entries at sector %d, footer and end-of-stream OK\n",
			n, d.CreateType, d.CID, d.Capacity, d.Grains, d.CompressedB, d.GrainTables, d.GDEntries, d.GDOffset)
	}
	return b.String()
}
