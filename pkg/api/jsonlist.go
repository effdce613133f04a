package api

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// jsonObject is a decoded JSON object's members in body order, values
// left undecoded. It stands for map[string]json.RawMessage, which costs a
// map per object: an mblock of a thousand items is a thousand objects.
type jsonObject []jsonMember

type jsonMember struct {
	key string
	val []byte
}

// get returns the value of key; of a repeated key the last, as
// encoding/json decodes a map.
func (o jsonObject) get(key string) (json.RawMessage, bool) {
	for i := len(o) - 1; i >= 0; i-- {
		if o[i].key == key {
			return o[i].val, true
		}
	}
	return nil, false
}

func objectFromMap(m map[string]json.RawMessage) jsonObject {
	o := make(jsonObject, 0, len(m))
	for k, v := range m {
		o = append(o, jsonMember{k, v})
	}
	return o
}

// splitList splits body, a JSON list of objects, into the objects'
// members without decoding their values. body must be valid JSON
// (json.Valid): the scan relies on it. ok is false when body is not a
// list of objects only; the caller then decodes it item by item, for
// per-item errors.
func splitList(body []byte) (items []jsonObject, ok bool) {
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '[' {
		return nil, false
	}
	i = skipSpace(body, i+1)
	if body[i] == ']' {
		return []jsonObject{}, true
	}
	for {
		if body[i] != '{' {
			return nil, false
		}
		var obj jsonObject
		if len(items) > 0 {
			obj = make(jsonObject, 0, len(items[0]))
		}
		i = skipSpace(body, i+1)
		if body[i] == '}' {
			i++
		} else {
			for {
				end := stringEnd(body, i)
				key, ok := unquote(body[i:end])
				if !ok {
					return nil, false
				}
				i = skipSpace(body, end)
				i = skipSpace(body, i+1) // past ':'
				start := i
				i = valueEnd(body, i)
				obj = append(obj, jsonMember{key, body[start:i]})
				i = skipSpace(body, i)
				if body[i] == '}' {
					i++
					break
				}
				i = skipSpace(body, i+1) // past ','
			}
		}
		items = append(items, obj)
		i = skipSpace(body, i)
		if body[i] == ']' {
			return items, true
		}
		i = skipSpace(body, i+1) // past ','
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd is the index just past the string that starts at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd is the index just past the value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j
		}
		j++
	}
	return j
}

// unquote decodes a JSON string as encoding/json does: the text between
// the quotes when there is no escape and it is valid UTF-8, otherwise
// by encoding/json (which replaces invalid UTF-8).
func unquote(s []byte) (string, bool) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' && bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return string(s[1 : len(s)-1]), true
	}
	var str string
	if err := json.Unmarshal(s, &str); err != nil {
		return "", false
	}
	return str, true
}
