package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Decode decodes node into v, a non-nil pointer, strictly and without
// stopping at the first mistake: a key v has no field for, a value of the
// wrong kind, or a value its type's UnmarshalText refuses (netip.Addr,
// netip.Prefix, communities) is a Problem at its key path under key, and
// every other value is decoded. Keys the node leaves out keep what v
// holds (the defaults). A nil node changes nothing.
func Decode(node *yaml.Node, v any, key string, ps *Problems) {
	if node == nil {
		return
	}
	decodeValue(node, reflect.ValueOf(v).Elem(), key, ps)
}

func joinKey(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

func decodeValue(n *yaml.Node, v reflect.Value, key string, ps *Problems) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "key:" with nothing keeps the default
	}
	if tu, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if n.Kind != yaml.ScalarNode {
			ps.Add(key, "line %d: want a single value, not a %s", n.Line, kindName(n))
			return
		}
		if err := tu.UnmarshalText([]byte(n.Value)); err != nil {
			ps.Add(key, "line %d: %v", n.Line, err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			ps.Add(key, "line %d: want a mapping of keys, not a %s", n.Line, kindName(n))
			return
		}
		fields := yamlFields(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.ShortTag() == "!!merge" {
				decodeValue(val, v, key, ps)
				continue
			}
			idx, ok := fields[k.Value]
			if !ok {
				ps.Add(joinKey(key, k.Value), "line %d: field %s not found in %s", k.Line, k.Value, orTop(key))
				continue
			}
			decodeValue(val, v.Field(idx), joinKey(key, k.Value), ps)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			ps.Add(key, "line %d: want a list, not a %s", n.Line, kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			decodeValue(c, s.Index(i), fmt.Sprintf("%s[%d]", key, i), ps)
		}
		v.Set(s)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		decodeValue(n, v.Elem(), key, ps)
	default:
		if err := n.Decode(v.Addr().Interface()); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				ps.Add(key, "%s", strings.Join(te.Errors, "; "))
			} else {
				ps.Add(key, "line %d: %v", n.Line, err)
			}
		}
	}
}

func orTop(key string) string {
	if key == "" {
		return "the top level"
	}
	return key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	default:
		return "single value"
	}
}

// yamlFields maps a struct's YAML keys to its field indexes.
func yamlFields(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = i
	}
	return out
}
