package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue/sqlitestore"
)

// A store that can not serve is a 503 with Retry-After and a body saying
// so, within a second, not a 500: SQLite closed, PostgreSQL refusing
// every connection to the database (its backends terminated).
func TestStoreOutageIs503(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		st := sqliteStore(t).(*sqlitestore.Store)
		e := newEnv(t, func(testing.TB) testStore { return st }, envOpts{})
		expectOutage(t, e, func() { st.Close() })
	})
	t.Run("postgres", func(t *testing.T) {
		st, u := openPostgres(t)
		e := newEnv(t, func(testing.TB) testStore { return st }, envOpts{})
		pc, err := pgx.ParseConfig(u)
		if err != nil {
			t.Fatal(err)
		}
		db := pgx.Identifier{pc.Database}.Sanitize()
		admin := pc.Copy()
		admin.Database = "postgres"
		exec := func(qs ...string) {
			c, err := pgx.ConnectConfig(context.Background(), admin)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			for _, q := range qs {
				if _, err := c.Exec(context.Background(), q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
		}
		expectOutage(t, e, func() {
			exec("ALTER DATABASE "+db+" ALLOW_CONNECTIONS false",
				"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '"+pc.Database+"'")
			t.Cleanup(func() { exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true") })
		})
	})
}

func expectOutage(t *testing.T, e *env, outage func()) {
	t.Helper()
	user := as(e, auth.RoleUser)
	e.block("192.0.2.10", "1h") // the store works before
	outage()
	for _, call := range []func() *response{
		func() *response {
			return e.post("/bhr/api/block", formBody(url.Values{"cidr": {"192.0.2.11"}, "source": {"t"}, "why": {"t"}, "duration": {"1h"}}), user)
		},
		func() *response { return e.get("/bhr/api/stats", user) },
		func() *response { return e.get("/bhr/api/expected_blocks/", user) },
	} {
		start := time.Now()
		r := call()
		took := time.Since(start)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
			!strings.Contains(string(r.body), "store is unavailable") {
			t.Errorf("%s during the outage: %d %q Retry-After %q", r.req, r.status, r.body, r.header.Get("Retry-After"))
		}
		if took > time.Second {
			t.Errorf("%s took %s during the outage", r.req, took)
		}
	}
}
