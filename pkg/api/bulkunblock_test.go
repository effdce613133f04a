package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/auth"
)

// api/unblock_now with a list of cidrs (JSON array or repeated form
// values) unblocks them all or none, names what is not blocked, and caps
// the list at api.max_mblock_items.
func testBulkUnblockNow(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	user := as(e, auth.RoleUser)
	for _, c := range []string{"192.0.2.10", "192.0.2.11", "192.0.2.12"} {
		e.block(c, "1h")
	}
	m := e.post("/bhr/api/unblock_now", jsonBody(t, map[string]any{"cidr": []string{"192.0.2.10", "192.0.2.99"}, "why": "over"}), user).
		expect(http.StatusBadRequest).obj()
	if !strings.Contains(fmt.Sprint(m["cidr"]), "192.0.2.99/32: not currently blocked") {
		t.Errorf("one not blocked: %v", m)
	}
	e.expectStats("after a refused bulk unblock", [4]int{3, 0, 0, 3})
	m = e.post("/bhr/api/unblock_now", jsonBody(t, map[string]any{"cidr": []string{"192.0.2.10", "192.0.2.11"}, "why": "over"}), user).
		expect(http.StatusOK).obj()
	if m["unblocked"] != float64(2) {
		t.Errorf("bulk unblock answered %v", m)
	}
	e.post("/bhr/api/unblock_now", formBody(url.Values{"cidr": {"192.0.2.12", "192.0.2.12/32"}, "why": {"over"}}), user).expect(http.StatusOK)
	e.expectStats("after the bulk unblocks", [4]int{0, 0, 0, 0})

	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("198.51.%d.%d", i/256, i%256)
	}
	m = e.post("/bhr/api/unblock_now", jsonBody(t, map[string]any{"cidr": many, "why": "x"}), user).expect(http.StatusBadRequest).obj()
	if !strings.Contains(fmt.Sprint(m["cidr"]), "At most 1000") {
		t.Errorf("1,001 cidrs: %v", m)
	}
	e.post("/bhr/api/unblock_now", jsonBody(t, map[string]any{"cidr": []any{"192.0.2.1", 7}, "why": "x"}), user).expect(http.StatusBadRequest)
}
