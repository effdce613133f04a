package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/auth"
)

// NUL bytes and invalid UTF-8 anywhere a string goes to the store are a
// 400 naming the field (or a 401 for credentials), on both stores alike,
// and nothing is stored. A why has a maximum length.
func testBadText(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	user, admin := as(e, auth.RoleUser), as(e, auth.RoleAdmin)
	for _, junk := range []string{"a\x00b", "caf\xe9"} {
		for _, field := range []string{"source", "why"} {
			form := url.Values{"cidr": {"192.0.2.1"}, "source": {"ids"}, "why": {"scan"}, "duration": {"1h"}}
			form.Set(field, junk)
			m := e.post("/bhr/api/block", formBody(form), user).expect(http.StatusBadRequest).obj()
			if !strings.Contains(fmt.Sprint(m[field]), "UTF-8") {
				t.Errorf("block with %s %q: %v", field, junk, m)
			}
		}
		e.post("/bhr/api/unblock_now", formBody(url.Values{"cidr": {"192.0.2.1"}, "why": {junk}}), user).expect(http.StatusBadRequest)
		e.post("/bhr/api/whitelist/", formBody(url.Values{"cidr": {"198.51.100.0/24"}, "why": {junk}}), admin).expect(http.StatusBadRequest)
		e.post("/bhr/api/source_blacklist/", formBody(url.Values{"source": {junk}, "why": {"x"}}), admin).expect(http.StatusBadRequest)
		q := url.QueryEscape(junk)
		e.get("/bhr/api/queue/"+url.PathEscape(junk), as(e, auth.RoleBlockManager)).expect(http.StatusBadRequest)
		e.get("/bhr/api/expected_blocks/?source="+q, user).expect(http.StatusBadRequest)
		e.get("/bhr/list.csv?source="+q, user).expect(http.StatusBadRequest)
		e.get("/bhr/api/blockentries/?ident="+q, user).expect(http.StatusBadRequest)
		e.get("/bhr/api/stats", basic(junk, "pw")).expect(http.StatusUnauthorized)
	}
	long := strings.Repeat("x", 10001)
	m := e.post("/bhr/api/block", formBody(url.Values{"cidr": {"192.0.2.1"}, "source": {"ids"}, "why": {long}, "duration": {"1h"}}), user).
		expect(http.StatusBadRequest).obj()
	if !strings.Contains(fmt.Sprint(m["why"]), "10000") {
		t.Errorf("long why: %v", m)
	}
	e.expectStats("nothing stored", [4]int{0, 0, 0, 0})
	if l := e.get("/bhr/api/idents/", user).expect(http.StatusOK).list(); len(l) != 0 {
		t.Errorf("idents registered: %v", l)
	}
}
