package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// splitList must agree with encoding/json: for any valid body it accepts,
// the same objects with the same members (last of a repeated key), and it
// accepts every list of objects.
func FuzzSplitList(f *testing.F) {
	for _, s := range []string{
		`[]`, ` [ ] `, `[{}]`, `[{},{}]`, `{}`, `"x"`, `[1]`, `[null]`, `[{"a":1},2]`, `[[]]`,
		`[{"cidr":"192.0.2.1","source":"s","why":"w","duration":300,"autoscale":false,"extend":true}]`,
		`[ {"a" : "b" , "c":[1,{"d":"]}"}],"e":{"f":"\"}"}} , {"a":null} ]`,
		`[{"a":1,"a":2}]`, `[{"ci\u0064r":"x","k\"q":"v\\"}]`, "[{\"a\":\"\xff\"}]", "[{\"\xff\":1}]",
		`[{"a":-1.5e+3,"b":true,"c":false,"d":null}]`, "[\n\t{\r\n\"a\"\t:\n1\n}\n]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		got, ok := splitList(body)
		var want []map[string]json.RawMessage
		listOfObjects := json.Unmarshal(body, &want) == nil
		for _, m := range want {
			listOfObjects = listOfObjects && m != nil
		}
		if ok != listOfObjects {
			t.Fatalf("splitList(%q) ok = %v, encoding/json says list of objects = %v", body, ok, listOfObjects)
		}
		if !ok {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("splitList(%q): %d objects, want %d", body, len(got), len(want))
		}
		for i, m := range want {
			keys := map[string]bool{}
			for _, mem := range got[i] {
				keys[mem.key] = true
			}
			if len(keys) != len(m) {
				t.Fatalf("splitList(%q) object %d: keys %v, want %v", body, i, keys, m)
			}
			for k, v := range m {
				g, ok := got[i].get(k)
				if !ok || !bytes.Equal(bytes.TrimSpace(g), bytes.TrimSpace(v)) {
					t.Fatalf("splitList(%q) object %d key %q = %q, want %q", body, i, k, g, v)
				}
			}
		}
	})
}
