package api

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestScanIDs(t *testing.T) {
	cases := []struct {
		in   string
		want []int64
		bad  string
		ok   bool
	}{
		{`[]`, nil, "", true},
		{` [ 3 , 1,"2", 3 ,1 ] `, []int64{1, 2, 3}, "", true},
		{`[1,0]`, nil, "0", true},
		{`[1,-2]`, nil, "-2", true},
		{`[1.5]`, nil, "1.5", true},
		{`["x"]`, nil, "x", true},
		{`[[1]]`, nil, "[1]", true},
		{`[1,]`, nil, "", false},
		{`{"a":1}`, nil, "", false},
		{`7`, nil, "", false},
	}
	for _, c := range cases {
		got, bad, ok := scanIDs([]byte(c.in))
		if ok != c.ok || bad != c.bad || !slices.Equal(got, c.want) {
			t.Errorf("scanIDs(%s) = %v %q %v, want %v %q %v", c.in, got, bad, ok, c.want, c.bad, c.ok)
		}
	}
}

// FuzzScanIDs: whatever a valid JSON array of positive integers holds,
// scanIDs reads the same set encoding/json does.
func FuzzScanIDs(f *testing.F) {
	for _, s := range []string{`[1,2,3]`, `[ 9007199254740993 , "4" ]`, `[]`, "[\n1\t,2]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var ref []json.Number
		if strings.Contains(s, `\`) || json.Unmarshal([]byte(s), &ref) != nil || ref == nil {
			return // escaped strings are not ids anyone sends
		}
		var want []int64
		for _, n := range ref {
			v, err := n.Int64()
			if err != nil || v <= 0 {
				return // not a positive integer: both refuse it
			}
			want = append(want, v)
		}
		got, bad, ok := scanIDs([]byte(s))
		slices.Sort(want)
		want = slices.Compact(want)
		if !ok || bad != "" || !slices.Equal(got, want) {
			t.Fatalf("scanIDs(%q) = %v %q %v, want %v", s, got, bad, ok, want)
		}
	})
}
