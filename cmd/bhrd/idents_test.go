package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

// bhrd ident list shows what the store holds; forget removes one, never
// an internal enforcer's.
func TestIdentCommands(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			dir := t.TempDir()
			cfgFile := filepath.Join(dir, "bhrd.yaml")
			store := fmt.Sprintf("store:\n  driver: sqlite\n  path: %s\n", filepath.Join(dir, "bhrd.db"))
			if driver == "postgres" {
				store = fmt.Sprintf("store:\n  driver: postgres\n  url: %q\n", pgtest.NewDatabase(t))
			}
			yaml := store + "enforcers:\n  - ident: kernel1\n    type: nullroute\n"
			if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(cfgFile)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			st, _, err := app.OpenMigrated(ctx, cfg.Store)
			if err != nil {
				t.Fatal(err)
			}
			svc, err := app.NewService(st, cfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Block(ctx, queue.BlockRequest{CIDR: "192.0.2.1", Source: "t", Why: "t", Duration: "1h"}); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"fw1", "kernel1"} {
				if _, err := svc.BlockQueue(queue.WithActor(ctx, queue.EnforcerActor(id)), id, time.Time{}, 0); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()

			c := "-config=" + cfgFile
			code, out, errs := cli(t, "", "ident", "list", c)
			if code != 0 || !strings.Contains(out, "fw1") || !strings.Contains(out, "kernel1") || !strings.Contains(out, "active") {
				t.Fatalf("ident list: %d %q %q", code, out, errs)
			}
			if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[1], "  1  ") {
				t.Errorf("ident list: want a header and two idents with 1 queued:\n%s", out)
			}
			if code, _, errs = cli(t, "", "ident", "forget", c, "-name", "kernel1"); code != 1 || !strings.Contains(errs, "enforced inside bhrd") {
				t.Errorf("forget kernel1: %d %q", code, errs)
			}
			if code, _, errs = cli(t, "", "ident", "forget", c, "-name", "nobody"); code != 1 || !strings.Contains(errs, `no ident "nobody"`) {
				t.Errorf("forget nobody: %d %q", code, errs)
			}
			if code, out, errs = cli(t, "", "ident", "forget", c, "-name", "fw1"); code != 0 || out != "forgot ident fw1\n" {
				t.Fatalf("forget fw1: %d %q %q", code, out, errs)
			}
			if _, out, _ = cli(t, "", "ident", "list", c); strings.Contains(out, "fw1") {
				t.Errorf("fw1 still listed:\n%s", out)
			}
			if code, _, _ = cli(t, "", "ident"); code != 2 {
				t.Errorf("bare ident: exit %d, want 2", code)
			}
		})
	}
}
