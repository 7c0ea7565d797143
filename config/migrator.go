package config

// ScyllaDB Migrator's config.yaml is accepted as-is: a document whose top
// level has `source` and `target` (singular) instead of `sources`/`targets`.
// This file holds what every migrator source type shares: detecting the
// format, the top-level keys, and the dispatch to the converter of the
// document's source.type. Each source family converts its own section in its
// own file (migrator_cql.go, migrator_dynamodb.go) and registers itself in
// migratorConverters from init.

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// MigratorDoc is a scylla-migrator config.yaml, split at its top level. The
// source and target sections stay YAML nodes for the converter of the source
// type to decode strictly.
type MigratorDoc struct {
	Source          yaml.Node        `yaml:"source"`
	Target          yaml.Node        `yaml:"target"`
	Renames         []MigratorRename `yaml:"renames"`
	Savepoints      *Savepoints      `yaml:"savepoints"`
	SkipTokenRanges yaml.Node        `yaml:"skipTokenRanges"`
	SkipSegments    []int            `yaml:"skipSegments"`
	Validation      yaml.Node        `yaml:"validation"`
}

// MigratorRename is one entry of scylla-migrator's `renames`: a column (or
// DynamoDB attribute) renamed on the way to the target.
type MigratorRename struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// migratorConverter fills c (sources, targets, savepoints, warnings) from a
// migrator document whose source.type it handles. Unsupported keys of its
// sections are appended to c.Warnings by name; keys the format does not
// have are errors.
type migratorConverter func(doc *MigratorDoc, c *Config) error

// migratorConverters maps a migrator source.type to its converter.
var migratorConverters = map[string]migratorConverter{}

// isMigratorDoc reports whether data's top level has `source` and `target`
// and no `sources`: ScyllaDB Migrator's shape rather than ferry's.
func isMigratorDoc(data []byte) bool {
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		return false
	}
	_, src := top["source"]
	_, dst := top["target"]
	_, srcs := top["sources"]
	return src && dst && !srcs
}

// parseMigrator converts a migrator document into a ferry Config.
func parseMigrator(data []byte) (*Config, error) {
	var doc MigratorDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: scylla-migrator config: %s", ErrInvalid, cleanYAMLError(err))
	}
	var head struct {
		Type string `yaml:"type"`
	}
	if err := doc.Source.Decode(&head); err != nil {
		return nil, fmt.Errorf("%w: scylla-migrator config: source: %v", ErrInvalid, err)
	}
	conv, ok := migratorConverters[head.Type]
	if !ok {
		known := make([]string, 0, len(migratorConverters))
		for k := range migratorConverters {
			known = append(known, k)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("%w: scylla-migrator config: source.type %q is not supported (supported: %s)",
			ErrInvalid, head.Type, strings.Join(known, ", "))
	}
	c := &Config{}
	if doc.Savepoints != nil {
		c.Savepoints = *doc.Savepoints
	}
	if err := conv(&doc, c); err != nil {
		return nil, fmt.Errorf("%w: scylla-migrator config: %v", ErrInvalid, err)
	}
	c.setDefaults()
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: scylla-migrator config converted to ferry's: %v", ErrInvalid, err)
	}
	c.Migrator = true
	return c, nil
}

// DecodeStrict decodes a YAML node into v, failing on keys v does not have.
// yaml.Node.Decode alone ignores unknown keys, so the node is re-encoded
// and decoded with KnownFields.
func DecodeStrict(n *yaml.Node, v any) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	raw, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s", cleanYAMLError(err))
	}
	return nil
}

func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "yaml: unmarshal errors:\n  ", "")
	msg = strings.ReplaceAll(msg, "cannot unmarshal !!", "wrong type: got ")
	return msg
}
