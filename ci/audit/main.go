// Command audit measures the built appliance with the tools auditors use
// (make audit; ci/audit.sh fetches the tools' content and runs it). It builds
// nothing:
//
//   - Lynis (Debian trixie's package) runs as root inside the image booted in
//     QEMU with first boot applied from SMBIOS credentials and SSH enabled. Lynis
//     is not in the image: it comes on a small FAT disk attached for this boot
//     only, and a unit passed as a systemd credential (systemd.extra-unit.*,
//     read by systemd-debug-generator) runs it and writes its report and the
//     guest's mount table back to that disk.
//   - OpenSCAP (oscap-chroot, the host's openscap-scanner) evaluates the
//     ANSSI-BP-028 intermediary profile of trixie's ssg-debian content on a
//     copy of the image's file systems taken without mounting (images/imagefs).
//
// It prints Lynis' hardening index and warnings and OpenSCAP's pass, fail and
// notapplicable counts and score, and exits 1 when a failing OpenSCAP rule is
// not listed with its reason in images/HARDENING.md, or when a goal is missed
// with -strict.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/ksmg-appliance/ksmg/provisioner/harden"
)

//nolint:gocyclo // one linear report: flags, boot and Lynis, OpenSCAP, verdict
func main() {
	var (
		image     = flag.String("image", "", "raw disk to audit (default: the newest out/ksmg-*.raw)")
		ssgDeb    = flag.String("ssg-deb", "", "ssg-debian .deb (trixie) with the SCAP content")
		lynisDeb  = flag.String("lynis-deb", "", "lynis .deb (trixie), copied into the booted image for the audit only")
		hardening = flag.String("hardening", "images/HARDENING.md", "document that lists every deliberately failing OpenSCAP rule")
		profile   = flag.String("profile", "anssi_bp28_intermediary", "XCCDF profile (short id)")
		skipBoot  = flag.Bool("skip-boot", false, "do not boot the image (no Lynis; partition rules then have no mount table)")
		strict    = flag.Bool("strict", false, "exit 1 when a goal is missed (OpenSCAP >= 90 % of applicable rules, Lynis index >= 90 with no warning)")
		keep      = flag.String("keep", "", "keep the work directory's results (results.xml, Lynis report, serial log) in this directory")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("audit: ")
	if *ssgDeb == "" || (*lynisDeb == "" && !*skipBoot) {
		log.Fatal("-ssg-deb and -lynis-deb are required (ci/audit.sh fetches them)")
	}
	if *image == "" {
		matches, _ := filepath.Glob("out/ksmg-*.raw")
		sort.Slice(matches, func(i, j int) bool { return modTime(matches[i]) > modTime(matches[j]) })
		if len(matches) == 0 {
			log.Fatal("no out/ksmg-*.raw: build the image first (make images) or pass -image")
		}
		*image = matches[0]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "ksmg-audit-")
	if err != nil {
		stop()
		log.Fatal(err) //nolint:gocritic // exitAfterDefer: stop() was called just above
	}
	defer os.RemoveAll(work)
	// log.Fatal skips deferred calls: fatal cleans up first.
	fatal := func(err error) {
		stop()
		os.RemoveAll(work)
		log.Fatal(err)
	}
	documented, err := documentedFailures(*hardening)
	if err != nil {
		fatal(err)
	}
	fmt.Printf("image: %s\n", *image)

	failed := false
	var boot *bootResult
	if !*skipBoot {
		fmt.Println("\n== Lynis (booted image, first boot applied, SSH on) ==")
		boot, err = runLynis(ctx, *image, *lynisDeb, work)
		if boot != nil && *keep != "" {
			keepFiles(*keep, boot.Files...)
		}
		if err != nil {
			fatal(err)
		}
		fmt.Println("hardening in force (harden.CheckRuntime):")
		notes, rerr := harden.CheckRuntime(boot.Runtime, true)
		for _, n := range notes {
			fmt.Println("  " + n)
		}
		if rerr != nil {
			fmt.Printf("  FAIL: %v\n", strings.ReplaceAll(rerr.Error(), "\n", "\n  FAIL: "))
			failed = true
		} else {
			fmt.Println("  firewall, AppArmor (gateway enforced), auditd (rules locked), sysctl, mounts, sockets: as set")
		}
		boot.Lynis.print(os.Stdout)
	}

	fmt.Printf("\n== OpenSCAP (%s, offline copy of the image) ==\n", *profile)
	var mounts []byte
	if boot != nil {
		mounts = boot.Mounts
	}
	scap, err := runSCAP(ctx, *image, *ssgDeb, *profile, mounts, work)
	if scap != nil && *keep != "" {
		keepFiles(*keep, scap.ResultsFile)
	}
	if err != nil {
		fatal(err)
	}
	scap.print(os.Stdout)

	var undocumented, needBoot []string
	for _, r := range scap.Failed() {
		switch {
		case documented[r]:
		case boot == nil && strings.HasPrefix(r, "partition_for_"):
			needBoot = append(needBoot, r) // judged on the booted mount table only
		default:
			undocumented = append(undocumented, r)
		}
	}
	if len(needBoot) > 0 {
		fmt.Printf("\nnot judged without the boot's mount table (-skip-boot): %s\n", strings.Join(needBoot, ", "))
	}
	if len(undocumented) > 0 {
		fmt.Printf("\nFAIL: %d failing rule(s) not listed in %s with a reason:\n  %s\n", len(undocumented), *hardening, strings.Join(undocumented, "\n  "))
		failed = true
	}
	var stale []string
	for r := range documented {
		if res, ok := scap.Results[r]; ok && res == "pass" {
			stale = append(stale, r)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		fmt.Printf("\nnote: %s lists rule(s) as failing that now pass: %s\n", *hardening, strings.Join(stale, ", "))
	}

	fmt.Println("\n== Goals ==")
	goal := func(ok bool, what string) {
		mark := "met"
		if !ok {
			mark = "MISSED"
			if *strict {
				failed = true
			}
		}
		fmt.Printf("  %-60s %s\n", what, mark)
	}
	goal(scap.PassRatio() >= 0.90, fmt.Sprintf("OpenSCAP: >= 90 %% of applicable rules pass (%.1f %%)", 100*scap.PassRatio()))
	if boot != nil {
		goal(boot.Lynis.Index >= 90, fmt.Sprintf("Lynis: hardening index >= 90 (%d)", boot.Lynis.Index))
		goal(len(boot.Lynis.Warnings) == 0, fmt.Sprintf("Lynis: no warning (%d)", len(boot.Lynis.Warnings)))
	}
	if failed {
		os.Exit(1)
	}
}

func modTime(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.ModTime().UnixNano()
}

func keepFiles(dir string, files ...string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Printf("keep: %v", err)
		return
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			log.Printf("keep: %v", err)
		}
	}
}
