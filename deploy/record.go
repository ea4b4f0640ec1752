package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

// Record is what a driver writes on a VM it deploys, next to the mark: what
// was deployed, so that a later plan can tell drift (the inventory asks
// for other settings) and an outdated image from a VM that is as asked.
// Values are the effective ones (image defaults resolved), so they compare
// with what the driver would deploy now.
type Record struct {
	State     string // MarkPending or MarkComplete; "" when the VM carries no mark
	Image     string // "sha256:<hex>" of the image file
	Version   string // the image's version, e.g. 0.1.0
	CPUs      int
	MemoryMiB int
	DiskGiB   int
	Network   string // port group, vSwitch or VM network, with ":<vlan>" when tagged
	Answers   string // AnswersDigest of the node's first-boot answers
	Cluster   string // the fleet's cluster the node belongs to; "" for a single deploy
	// Control is the control node's address a Secondary node was told
	// (a first-boot answer kept out of Answers: a plan may not know it).
	Control string
}

// Record keys besides MarkKey (vSphere extraConfig keys; key=value words in
// Hyper-V notes and SCVMM descriptions).
const (
	RecordImage   = MarkKey + ".image"
	RecordVersion = MarkKey + ".version"
	RecordCPUs    = MarkKey + ".cpus"
	RecordMemory  = MarkKey + ".memory"
	RecordDisk    = MarkKey + ".disk"
	RecordNetwork = MarkKey + ".network"
	RecordAnswers = MarkKey + ".answers"
	RecordCluster = MarkKey + ".cluster"
	RecordControl = MarkKey + ".control"
)

// Marked reports whether the VM carries the mark at all (it was made by
// ksmg).
func (r Record) Marked() bool { return r.State != "" }

// Complete reports whether the deploy that made the VM finished.
func (r Record) Complete() bool { return r.State == MarkComplete }

// Pairs are the record's keys and values, the mark first; empty fields are
// left out.
func (r Record) Pairs() [][2]string {
	out := [][2]string{{MarkKey, r.State}}
	add := func(k, v string) {
		if v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	num := func(k string, v int) {
		if v > 0 {
			add(k, strconv.Itoa(v))
		}
	}
	add(RecordImage, r.Image)
	add(RecordVersion, r.Version)
	num(RecordCPUs, r.CPUs)
	num(RecordMemory, r.MemoryMiB)
	num(RecordDisk, r.DiskGiB)
	add(RecordNetwork, r.Network)
	add(RecordAnswers, r.Answers)
	add(RecordCluster, r.Cluster)
	add(RecordControl, r.Control)
	return out
}

// RecordFrom reads a record through get (an extraConfig look-up, say).
func RecordFrom(get func(key string) (string, bool)) Record {
	var r Record
	s := func(k string) string { v, _ := get(k); return v }
	n := func(k string) int { v, _ := strconv.Atoi(s(k)); return v }
	if v, ok := get(MarkKey); ok {
		r.State = v
		if r.State == "" {
			r.State = "?" // marked, with an empty value: ours, unfinished
		}
	}
	r.Image, r.Version, r.Network, r.Answers, r.Cluster = s(RecordImage), s(RecordVersion), s(RecordNetwork), s(RecordAnswers), s(RecordCluster)
	r.Control = s(RecordControl)
	r.CPUs, r.MemoryMiB, r.DiskGiB = n(RecordCPUs), n(RecordMemory), n(RecordDisk)
	return r
}

// Text is the record as key=value words separated by sep (Hyper-V notes:
// a line each; SCVMM description: spaces); values are URL-escaped, so a
// network name with spaces stays one word.
func (r Record) Text(sep string) string {
	words := make([]string, 0, 10)
	for _, kv := range r.Pairs() {
		words = append(words, kv[0]+"="+url.PathEscape(kv[1]))
	}
	return strings.Join(words, sep)
}

// ParseRecordText reads the record from the key=value words of a note or
// description; other words (an admin's remarks) are ignored.
func ParseRecordText(s string) Record {
	m := map[string]string{}
	for _, w := range strings.Fields(s) {
		k, v, ok := strings.Cut(w, "=")
		if !ok || (k != MarkKey && !strings.HasPrefix(k, MarkKey+".")) {
			continue
		}
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		m[k] = v
	}
	return RecordFrom(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

// AnswersDigest is "sha256:<hex>" over the node's non-secret first-boot
// answers. Secrets are left out (the record is readable by anyone who can
// read the VM's settings), and so is the control address of Secondary
// nodes, which may be the IP the control node's deploy reports and is not
// known to a plan.
func AnswersDigest(props map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if answers.IsSecret(k) || k == "ksmg.cluster.control_address" {
			continue
		}
		fmt.Fprintf(h, "%s=%s\n", k, props[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Differences compares what was deployed (have) with what a deploy would
// do now (want). outdated: the image differs. drift: the other fields that
// differ, as "field have → want". A record without image (written by an
// older ksmg) compares nothing.
func Differences(have, want Record) (drift []string, outdated bool) {
	if have.Image == "" {
		return nil, false
	}
	outdated = want.Image != "" && have.Image != want.Image
	diff := func(name, h, w string) {
		if w != "" && h != w {
			drift = append(drift, fmt.Sprintf("%s %s → %s", name, orDash(h), w))
		}
	}
	num := func(name string, h, w int) {
		if w > 0 && h != w {
			drift = append(drift, fmt.Sprintf("%s %d → %d", name, h, w))
		}
	}
	num("cpus", have.CPUs, want.CPUs)
	num("memory", have.MemoryMiB, want.MemoryMiB)
	num("disk", have.DiskGiB, want.DiskGiB)
	diff("network", have.Network, want.Network)
	if want.Answers != "" && have.Answers != want.Answers {
		drift = append(drift, "answers (first-boot answers changed)")
	}
	// Only when both are known: a plan may not know the address yet, and
	// an older ksmg did not record it.
	if have.Control != "" && want.Control != "" && have.Control != want.Control {
		drift = append(drift, fmt.Sprintf("control_address %s → %s (the control node moved; --replace redeploys the node)", have.Control, want.Control))
	}
	return drift, outdated
}

// DriftField is the field name a drift entry starts with.
func DriftField(entry string) string {
	f, _, _ := strings.Cut(entry, " ")
	return f
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// InPlace sorts the drift of a deployed VM (have) from what the node asks
// for (want) into what can change in place (fields, with the record the
// VM has once they did) and what cannot (left, with the reason: a disk
// only grows; answers and images need a new VM).
func InPlace(have, want Record, drift []string) (fields map[string]bool, rec Record, left []string) {
	fields, rec = map[string]bool{}, have
	for _, entry := range drift {
		switch DriftField(entry) {
		case "cpus":
			rec.CPUs = want.CPUs
		case "memory":
			rec.MemoryMiB = want.MemoryMiB
		case "disk":
			if want.DiskGiB < have.DiskGiB {
				left = append(left, entry+" (disks only grow)")
				continue
			}
			rec.DiskGiB = want.DiskGiB
		case "network":
			rec.Network = want.Network
		default:
			left = append(left, entry)
			continue
		}
		fields[DriftField(entry)] = true
	}
	return fields, rec, left
}
