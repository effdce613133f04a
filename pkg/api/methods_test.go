package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/auth"
)

// Every GET route answers HEAD as Django did (same status and headers, no
// body), and OPTIONS says which methods a path takes.
func testHeadAndOptions(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	e.block("192.0.2.1", "1h")
	user := as(e, auth.RoleUser)
	for _, p := range []string{"/healthz", "/bhr/api/stats", "/bhr/api/blocks/", "/bhr/api/blocks/1/", "/bhr/api/query/192.0.2.1",
		"/bhr/api/queue/fw1", "/bhr/api/unblock_queue/fw1", "/bhr/list.csv", "/bhr/api/current_blocks_brief", "/bhr/api/idents/"} {
		get := e.get(p, as(e, auth.RoleAdmin))
		head := e.do("HEAD", p, nil, as(e, auth.RoleAdmin))
		if head.status != get.status || get.status != http.StatusOK || len(head.body) != 0 ||
			head.header.Get("Content-Type") != get.header.Get("Content-Type") {
			t.Errorf("HEAD %s: %d %q %q; GET: %d %q", p, head.status, head.header.Get("Content-Type"), head.body, get.status, get.header.Get("Content-Type"))
		}
	}
	e.do("HEAD", "/bhr/api/blocks/", nil).expect(http.StatusUnauthorized)
	r := e.do("OPTIONS", "/bhr/api/whitelist/", nil, user).expect(http.StatusNoContent)
	allow := r.header.Get("Allow")
	for _, m := range []string{"GET", "HEAD", "POST", "OPTIONS"} {
		if !strings.Contains(allow, m) {
			t.Errorf("OPTIONS api/whitelist/: Allow %q lacks %s", allow, m)
		}
	}
	e.do("DELETE", "/bhr/api/stats", nil, user).expect(http.StatusMethodNotAllowed)
}
