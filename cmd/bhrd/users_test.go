package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// cli runs bhrd with args and returns its exit status and output.
func cli(t *testing.T, in string, args ...string) (int, string, string) {
	t.Helper()
	stdin = strings.NewReader(in)
	defer func() { stdin = os.Stdin }()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUserAndTokenCommands(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			dir := t.TempDir()
			cfgFile := filepath.Join(dir, "bhrd.yaml")
			yaml := fmt.Sprintf("store:\n  driver: sqlite\n  path: %s\n", filepath.Join(dir, "bhrd.db"))
			if driver == "postgres" {
				yaml = fmt.Sprintf("store:\n  driver: postgres\n  url: %q\n", pgtest.NewDatabase(t))
			}
			if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			testCommands(t, cfgFile)
		})
	}
}

func testCommands(t *testing.T, cfgFile string) {
	c := "-config=" + cfgFile
	mustRun := func(in string, args ...string) string {
		t.Helper()
		code, out, errs := cli(t, in, args...)
		if code != 0 {
			t.Fatalf("bhrd %s: exit %d: %s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	// Users: password from stdin, from a file, and none.
	out := mustRun("alice-password\n", "user", "add", c, "-username", "alice", "-role", "user,admin", "-password-stdin")
	if !strings.Contains(out, "created user alice") || !strings.Contains(out, "user,admin") {
		t.Errorf("user add: %q", out)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("bob-password\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun("", "user", "add", c, "-username", "bob", "-role", "blocker", "-password-file", pwFile)
	out = mustRun("", "user", "add", c, "-username", "exabgp", "-role", "block-manager")
	if !strings.Contains(out, "can only use API tokens") {
		t.Errorf("user add without password: %q", out)
	}
	out = mustRun("", "user", "list", c)
	for _, want := range []string{"USERNAME", "alice", "user,admin", "bob", "blocker", "exabgp"} {
		if !strings.Contains(out, want) {
			t.Errorf("user list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "$2a$") || strings.Contains(out, "password\n") {
		t.Errorf("user list shows a secret:\n%s", out)
	}

	// Tokens: the secret once on stdout, alone.
	code, secret, errs := cli(t, "", "token", "create", c, "-username", "exabgp", "-name", "router1")
	secret = strings.TrimSpace(secret)
	if code != 0 || !regexp.MustCompile(`^bhrd_[0-9a-f]{64}$`).MatchString(secret) || !strings.Contains(errs, "shown only now") {
		t.Fatalf("token create: %d %q %q", code, secret, errs)
	}
	out = mustRun("", "token", "list", c)
	if !strings.Contains(out, "exabgp") || !strings.Contains(out, "router1") || strings.Contains(out, secret) || strings.Contains(out, auth.HashToken(secret)) {
		t.Errorf("token list:\n%s", out)
	}

	// What the commands wrote works: check with an Authenticator over the
	// same store, as the daemon would.
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, _, err := app.OpenMigrated(ctx, cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := auth.NewAuthenticator(st, auth.AuthenticatorOptions{CacheTTL: -1})
	p, err := a.Basic(ctx, "alice", "alice-password")
	if err != nil || !p.Can(auth.PermSkipWhitelist) {
		t.Errorf("alice: %v %v", p, err)
	}
	if _, err := a.Basic(ctx, "bob", "bob-password"); err != nil {
		t.Errorf("bob (password from a file with CRLF): %v", err)
	}
	p, err = a.Token(ctx, secret)
	if err != nil || p.Username != "exabgp" || !p.Can(auth.PermAddBlockEntry) {
		t.Errorf("token: %v %v", p, err)
	}
	tokens, err := st.ListTokens(ctx)
	if err != nil || len(tokens) != 1 {
		t.Fatalf("tokens: %v %v", tokens, err)
	}
	mustRun("", "token", "revoke", c, "-id", fmt.Sprint(tokens[0].ID))
	if _, err := a.Token(ctx, secret); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("revoked token: %v", err)
	}
	if out := mustRun("", "token", "list", c); strings.Contains(out, " -\n") {
		t.Errorf("token list after revoke shows no revocation time:\n%s", out)
	}
	mustRun("", "user", "disable", c, "-username", "bob")
	if _, err := a.Basic(ctx, "bob", "bob-password"); !errors.Is(err, auth.ErrUserDisabled) {
		t.Errorf("disabled bob: %v", err)
	}
	mustRun("", "user", "enable", c, "-username", "bob")
	if _, err := a.Basic(ctx, "bob", "bob-password"); err != nil {
		t.Errorf("re-enabled bob: %v", err)
	}

	// Mistakes.
	for _, m := range []struct {
		code int
		in   string
		args []string
		msg  string
	}{
		{2, "", []string{"user"}, "missing subcommand"},
		{2, "", []string{"user", "frobnicate", c}, "unknown subcommand"},
		{2, "", []string{"user", "add", c, "-role", "user"}, "-username is required"},
		{2, "", []string{"user", "add", c, "-username", "x", "-role", "root"}, `unknown role "root"`},
		{2, "", []string{"user", "add", c, "-username", "x"}, "at least one role"},
		{2, "", []string{"user", "add", c, "-username", "x", "-role", "user", "-password-stdin", "-password-file", pwFile}, "only one of"},
		{2, "", []string{"user", "add", c, "-username", "x", "-role", "user", "-password", "secret"}, "flag provided but not defined"},
		{1, "", []string{"user", "add", c, "-username", "x", "-role", "user", "-password-stdin"}, "empty password"},
		{1, "short\n", []string{"user", "add", c, "-username", "x", "-role", "user", "-password-stdin"}, "shorter than"},
		{1, "another-password\n", []string{"user", "add", c, "-username", "alice", "-role", "user", "-password-stdin"}, "already exists"},
		{1, "", []string{"user", "add", c, "-username", "bad name", "-role", "user"}, "invalid username"},
		{1, "", []string{"user", "disable", c, "-username", "nobody"}, "not found"},
		{2, "", []string{"token"}, "missing subcommand"},
		{1, "", []string{"token", "create", c, "-username", "nobody"}, "not found"},
		{2, "", []string{"token", "revoke", c}, "-id is required"},
		{1, "", []string{"token", "revoke", c, "-id", "999"}, "not found"},
	} {
		code, out, errs := cli(t, m.in, m.args...)
		if code != m.code || !strings.Contains(out+errs, m.msg) {
			t.Errorf("bhrd %s: exit %d, output %q%q; want exit %d saying %q", strings.Join(m.args, " "), code, out, errs, m.code, m.msg)
		}
	}
}
