package main

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
)

var hclBlock = regexp.MustCompile("(?s)```hcl\n(.*?)```")

// repoRoot is the repository's top directory.
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// TestDocsDescribeEveryOption: each component has its page in the
// scaffolding layout, and every option of its HCL2 spec is described in the
// reference and used in an example.
func TestDocsDescribeEveryOption(t *testing.T) {
	t.Parallel()
	set := newSet()
	type component struct {
		dir, name string
		spec      hcldec.ObjectSpec
	}
	var all []component
	for name, b := range set.Builders {
		all = append(all, component{"builders", name, b.ConfigSpec()})
	}
	for name, p := range set.Provisioners {
		all = append(all, component{"provisioners", name, p.ConfigSpec()})
	}
	for name, p := range set.PostProcessors {
		all = append(all, component{"post-processors", name, p.ConfigSpec()})
	}
	if len(all) != 5 {
		t.Errorf("%d components, want 5", len(all))
	}
	for _, c := range all {
		page := filepath.Join(repoRoot, "docs", c.dir, c.name+".mdx")
		data, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		doc := string(data)
		if !strings.Contains(doc, "Type: `ksmg-"+c.name+"`") {
			t.Errorf("%s does not name the component type ksmg-%s", page, c.name)
		}
		var examples strings.Builder
		for _, m := range hclBlock.FindAllStringSubmatch(doc, -1) {
			examples.WriteString(m[1])
		}
		if examples.Len() == 0 {
			t.Errorf("%s has no HCL example", page)
		}
		var keys []string
		for k := range c.spec {
			if !strings.HasPrefix(k, "packer_") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !strings.Contains(doc, "- `"+k+"` (") {
				t.Errorf("%s does not describe option %s", page, k)
			}
			// The steps provisioners share one configuration; a component's
			// page lists the options it does not use under "**Not used**",
			// and its examples need not set them.
			if strings.Contains(section(doc, "**Not used**"), "- `"+k+"` (") {
				continue
			}
			if !regexp.MustCompile(`(?m)^\s*` + k + `\s+=`).MatchString(examples.String()) {
				t.Errorf("%s has no example setting %s", page, k)
			}
		}
		web := filepath.Join(repoRoot, ".web-docs", "components", strings.TrimSuffix(c.dir, "s"), c.name, "README.md")
		if _, err := os.Stat(web); err != nil {
			t.Errorf("web docs: %v (ci/generate.sh makes them)", err)
		}
	}
}

// section is the text of doc after the line heading, up to the next line
// starting with "**" or "#", or "" if heading is not there.
func section(doc, heading string) string {
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		return ""
	}
	rest := doc[i+len(heading)+2:]
	if j := regexp.MustCompile(`(?m)^(\*\*|#)`).FindStringIndex(rest); j != nil {
		rest = rest[:j[0]]
	}
	return rest
}
