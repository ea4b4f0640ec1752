package fleet

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// posError is one inventory problem at a line of the file.
type posError struct {
	File string
	Line int
	Msg  string
}

func (e *posError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

var typeErrLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// strictDecode decodes node into v (a pointer) and rejects mapping keys
// that v has no field for, at their line. yaml.v3 only offers KnownFields
// on a Decoder reading bytes, where the lines of a sub-document (a target's
// driver settings) would no longer be those of the file; so the check walks
// the node against v's type itself.
func strictDecode(file string, node *yaml.Node, v any) []error {
	return strictDecodeAt(file, node, v, "")
}

// strictDecodeAt is strictDecode of a node found at where (e.g.
// "nodes[1] (sec-1)"), which its messages name with the key path of each
// problem.
func strictDecodeAt(file string, node *yaml.Node, v any, where string) []error {
	var errs []error
	if err := node.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				if sm := typeErrLine.FindStringSubmatch(m); sm != nil {
					l, _ := strconv.Atoi(sm[1])
					errs = append(errs, &posError{file, l, joinPath(where, keyPathAt(node, l, "")) + sm[2]})
				} else {
					errs = append(errs, &posError{file, node.Line, joinPath(where, "") + m})
				}
			}
		} else {
			errs = append(errs, &posError{file, node.Line, joinPath(where, "") + err.Error()})
		}
	}
	errs = append(errs, unknownKeys(file, node, reflect.TypeOf(v), where, "")...)
	return errs
}

// joinPath is the "where.path: " prefix of a message ("" when both are
// empty).
func joinPath(where, path string) string {
	path = strings.TrimSuffix(path, ".")
	switch {
	case where == "" && path == "":
		return ""
	case where == "":
		return path + ": "
	case path == "":
		return where + ": "
	}
	return where + "." + path + ": "
}

// keyPathAt is the key path (a.b.0.) of the value at line in node, "" if
// none is.
func keyPathAt(node *yaml.Node, line int, path string) string {
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	switch node.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if v.Line == line && (v.Kind == yaml.ScalarNode || v.Kind == yaml.AliasNode) {
				return path + k.Value + "."
			}
			if p := keyPathAt(v, line, path+k.Value+"."); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range node.Content {
			if c.Line == line && c.Kind == yaml.ScalarNode {
				return fmt.Sprintf("%s%d.", path, i)
			}
			if p := keyPathAt(c, line, fmt.Sprintf("%s%d.", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	nodeType        = reflect.TypeOf(yaml.Node{})
)

// unknownKeys reports mapping keys of node that t does not declare; where
// and path name the node in messages.
func unknownKeys(file string, node *yaml.Node, t reflect.Type, where, path string) []error {
	if node == nil || t == nil {
		return nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) {
			return nil // decodes itself, checks itself
		}
		t = t.Elem()
	}
	if t == nodeType || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			return nil // a type error already says so
		}
		fields := structFields(t)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, val := node.Content[i], node.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				errs = append(errs, &posError{file, k.Line, fmt.Sprintf("%sunknown key %q (expected one of: %s)", joinPath(where, path), k.Value, strings.Join(sortedKeys(fields), ", "))})
				continue
			}
			errs = append(errs, unknownKeys(file, val, ft, where, path+k.Value+".")...)
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			errs = append(errs, unknownKeys(file, node.Content[i+1], t.Elem(), where, path+node.Content[i].Value+".")...)
		}
	case reflect.Slice, reflect.Array:
		if node.Kind != yaml.SequenceNode {
			return nil
		}
		for i, c := range node.Content {
			errs = append(errs, unknownKeys(file, c, t.Elem(), where, fmt.Sprintf("%s%d.", path, i))...)
		}
	}
	return errs
}

// structFields maps the YAML key of every field yaml.v3 would fill to its
// type, following ",inline" the way yaml.v3 does.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue // unexported
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range structFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
