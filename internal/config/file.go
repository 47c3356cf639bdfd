package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// readFile applies the YAML file at path to the settings and returns every
// problem, each naming the file, the line and the key. Keys that shared
// reports (another command's) are skipped.
func readFile(path string, ss []setting, shared func(string) bool) []error {
	root, err := parseFile(path)
	if err != nil {
		return []error{err}
	}
	if root == nil {
		return nil // an empty file, or only comments
	}
	if root.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("%s:%d: want a mapping of settings (key: value), got %s", path, root.Line, kindName(root))}
	}
	byKey := make(map[string]setting, len(ss))
	for _, s := range ss {
		byKey[s.key] = s
	}
	var errs []error
	seen := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %s", path, k.Line, k.Value, fmt.Sprintf(format, args...)))
		}
		s, ok := byKey[k.Value]
		switch {
		case k.Kind != yaml.ScalarNode:
			errs = append(errs, fmt.Errorf("%s:%d: a key must be a name, got %s", path, k.Line, kindName(k)))
			continue
		case !ok && shared != nil && shared(k.Value):
			continue
		case !ok:
			bad("unknown key")
			continue
		case seen[k.Value] != 0:
			bad("repeated (first on line %d)", seen[k.Value])
			continue
		}
		seen[k.Value] = k.Line
		if err := apply(s, v); err != nil {
			bad("%v", err)
		}
	}
	return errs
}

// parseFile reads one YAML document of at most MaxFileSize bytes; nil
// means the file holds no document.
func parseFile(path string) (*yaml.Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("config file %s: over %d bytes", path, MaxFileSize)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: want one YAML document", path)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// apply sets s from a value node: a scalar as written (null as empty), or
// for a list setting, a sequence of scalars taken one entry each.
func apply(s setting, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return s.set("", true)
	case n.Kind == yaml.ScalarNode:
		return s.set(n.Value, true)
	case n.Kind == yaml.SequenceNode && s.isList():
		var list []string // nil when empty, as the other layers leave it
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a list of single values, got %s in it", e.Line, kindName(e))
			}
			list = append(list, e.Value)
		}
		s.v.Set(reflect.ValueOf(list))
		return nil
	case s.isList():
		return fmt.Errorf("want a list or a single value, got %s", kindName(n))
	}
	return fmt.Errorf("want a single value, got %s", kindName(n))
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a value"
}
