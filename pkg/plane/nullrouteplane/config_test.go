package nullrouteplane_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane/nullrouteplane"
)

// An enforcer's sub-section starts from the top-level section.
func TestSettingsOverSection(t *testing.T) {
	c, err := config.Parse([]byte(`
nullroute: {table: 100, protocol: 77}
enforcers:
  - {ident: n1, type: nullroute}
  - {ident: n2, type: nullroute, nullroute: {protocol: 78}}
`))
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := nullrouteplane.SettingsOf(c, c.Enforcers[0]), nullrouteplane.SettingsOf(c, c.Enforcers[1])
	if n1 != (nullrouteplane.Config{Table: 100, Protocol: 77}) || n2 != (nullrouteplane.Config{Table: 100, Protocol: 78}) {
		t.Errorf("n1 %+v, n2 %+v", n1, n2)
	}
	d := nullrouteplane.SectionOf(config.Default())
	if d.Table != 254 || d.Protocol != 66 {
		t.Errorf("defaults %+v", d)
	}
}

// check-config refuses what the start would: the kernel's own protocols
// (bhrd deletes the routes of its protocol that it does not expect, so
// protocol 4 would take the administrator's static routes), table 0.
func TestRefusesWhatTheKernelPlaneWould(t *testing.T) {
	for _, c := range []struct{ yaml, key, msg string }{
		{"nullroute: {protocol: 4}", "nullroute", "reserved"},
		{"nullroute: {protocol: 256}", "nullroute", "out of range"},
		{"nullroute: {table: -1}", "nullroute", "out of range"},
		{"enforcers: [{ident: n, type: nullroute, nullroute: {protocol: 2}}]", "enforcers[0].nullroute", "reserved"},
		{"enforcers: [{ident: n, type: nullroute, nullroute: {table: 0}}]", "enforcers[0].nullroute", "table 0"},
	} {
		_, err := config.Parse([]byte(c.yaml))
		var ps config.Problems
		if !errors.As(err, &ps) {
			t.Errorf("%s: accepted (%v)", c.yaml, err)
			continue
		}
		if len(ps) != 1 || ps[0].Key != c.key || !strings.Contains(ps[0].Message, c.msg) {
			t.Errorf("%s: %v, want one problem at %s saying %q", c.yaml, ps, c.key, c.msg)
		}
	}
}
