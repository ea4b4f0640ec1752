package sources

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os/exec"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// ovfEnvNS is the OVF environment namespace (DSP0243) of oe:key/oe:value.
const ovfEnvNS = "http://schemas.dmtf.org/ovf/environment/1"

// ParseOVFEnv extracts the PropertySection of an OVF environment
// document. Properties of nested Entity sections (other VMs of a vApp)
// are ignored.
func ParseOVFEnv(doc []byte) (map[string]string, error) {
	type property struct {
		Attrs []xml.Attr `xml:",any,attr"`
	}
	type env struct {
		XMLName    xml.Name
		Properties []property `xml:"PropertySection>Property"`
	}
	var e env
	dec := xml.NewDecoder(bytes.NewReader(doc))
	dec.Strict = true
	if err := dec.Decode(&e); err != nil {
		return nil, i18n.Errorf("OVF environment is not well-formed XML: %v", err)
	}
	if e.XMLName.Local != "Environment" || (e.XMLName.Space != "" && e.XMLName.Space != ovfEnvNS) {
		return nil, i18n.Errorf("OVF environment: root element is %q, expected Environment in %s", e.XMLName.Local, ovfEnvNS)
	}
	out := map[string]string{}
	for i, p := range e.Properties {
		var key, value string
		var hasKey bool
		for _, a := range p.Attrs {
			if a.Name.Space != ovfEnvNS && a.Name.Space != "" {
				continue
			}
			switch a.Name.Local {
			case "key":
				key, hasKey = a.Value, true
			case "value":
				value = a.Value
			}
		}
		if !hasKey || key == "" {
			return nil, i18n.Errorf("OVF environment: PropertySection/Property[%d] has no oe:key", i+1)
		}
		if _, dup := out[key]; dup {
			return nil, i18n.Errorf("OVF environment: property %q appears twice", key)
		}
		out[key] = value
	}
	return out, nil
}

// OVFEnv reads guestinfo.ovfEnv through VMware Tools' vmware-rpctool.
type OVFEnv struct {
	// Tool is the rpctool binary; "" means vmware-rpctool from PATH.
	Tool string
	// Vendor is the DMI system vendor file; "" means DMIVendorPath. On a
	// machine of another maker the tool is not run.
	Vendor string
}

// Name implements Source.
func (OVFEnv) Name() *i18n.Msg { return i18n.Errorf("VMware OVF environment") }

// Read implements Source: absent when the machine is not a VMware VM, the
// tool is missing or the VM has no OVF environment (not deployed from an
// OVF with properties).
func (o OVFEnv) Read(ctx context.Context) (map[string]string, error) {
	if notVMware(o.Vendor) {
		return nil, ErrAbsent
	}
	tool := o.Tool
	if tool == "" {
		tool = "vmware-rpctool"
	}
	path, err := exec.LookPath(tool)
	if err != nil {
		return nil, ErrAbsent
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "info-get guestinfo.ovfEnv")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// rpctool exits 1 with "No value found" outside VMware or
			// without an OVF environment.
			return nil, ErrAbsent
		}
		return nil, fmt.Errorf("vmware-rpctool: %w", err)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, ErrAbsent
	}
	kv, err := ParseOVFEnv(out)
	if err != nil {
		return nil, err
	}
	return kv, nil
}
