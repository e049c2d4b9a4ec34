package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A config file (--config FILE) of accord coordinator or accord
// participant is YAML whose keys are the command's flag names, without
// dashes:
//
//	grpc-addr: 10.0.0.1:7700
//	raft-profile: wan
//	join: [10.0.0.1:7702, 10.0.0.2:7702]   # a list flag takes a sequence or "a,b"
//
// Each value is set as if given on the command line, unless the command
// line gives that flag too: the command line wins over the file, and the
// file over environment variables and defaults. A key that is no flag of
// the command is an error naming the key and the file. A command may also
// have sections decoded as structures (the coordinator's limits:).

// flagValues are the keys of a config file that name flags, with their
// values.
type flagValues map[string]yaml.Node

// listFlags take comma-separated lists: in a config file they may also be
// given as YAML sequences.
var listFlags = []string{"join", "coordinator", "classes", "fault-drop-after-training", "fault-drop-first-attempt"}

// decodeConfigFile decodes the YAML file at path into file: a pointer to a
// struct whose sections are fields and whose `yaml:",inline"` flagValues
// field takes every other key. Unknown fields inside a section are errors.
// An empty file sets nothing.
func decodeConfigFile(path string, file any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	if len(doc.Content) > 0 && doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("--config %s: line %d: want a mapping of keys (flag names) to values", path, doc.Content[0].Line)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(file); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	return nil
}

// givenFlags names the flags of fs, already parsed, that were set.
func givenFlags(fs *flag.FlagSet) map[string]bool {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return given
}

// applyFlagValues sets on fs, already parsed, each flag of vals that the
// command line did not set. path names the file in errors.
func applyFlagValues(fs *flag.FlagSet, path string, vals flagValues) error {
	given := givenFlags(fs)
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		node := vals[key]
		where := fmt.Sprintf("--config %s: line %d: %s", path, node.Line, key)
		f := fs.Lookup(key)
		switch {
		case key == "config":
			return fmt.Errorf("%s: a config file cannot name another", where)
		case f == nil:
			hint := ""
			if alt := strings.ReplaceAll(strings.TrimLeft(key, "-"), "_", "-"); alt != key && fs.Lookup(alt) != nil {
				hint = fmt.Sprintf(" (keys are flag names: %s)", alt)
			}
			return fmt.Errorf("%s: unknown key: %s has no flag --%s%s", where, fs.Name(), key, hint)
		}
		value, err := flagValue(key, &node)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if given[key] {
			continue // the command line overrides the file
		}
		if err := fs.Set(key, value); err != nil {
			typ, _ := flag.UnquoteUsage(f)
			if typ == "" {
				typ = "bool"
			}
			return fmt.Errorf("%s: %q is not a value of type %s (%w)", where, value, typ, err)
		}
	}
	return nil
}

// flagValue is the command-line form of a config file's value for flag
// key: a scalar as written, or a sequence of scalars joined by commas for a
// list flag.
func flagValue(key string, node *yaml.Node) (string, error) {
	switch {
	case node.Kind == yaml.ScalarNode && node.Tag == "!!null":
		return "", errors.New("no value (quote an empty string: \"\")")
	case node.Kind == yaml.ScalarNode:
		return node.Value, nil
	case node.Kind == yaml.SequenceNode && slices.Contains(listFlags, key):
		items := make([]string, len(node.Content))
		for i, n := range node.Content {
			if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
				return "", errors.New("want a list of values")
			}
			items[i] = n.Value
		}
		return strings.Join(items, ","), nil
	case node.Kind == yaml.SequenceNode:
		return "", errors.New("want one value, not a list")
	}
	return "", errors.New("want a value, not a mapping")
}
