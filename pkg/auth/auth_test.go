package auth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue/sqlitestore"
)

var ctx = context.Background()

func TestMain(m *testing.M) {
	restore := auth.SetPasswordCost(bcrypt.MinCost)
	code := m.Run()
	restore()
	os.Exit(code)
}

func TestRolePermissions(t *testing.T) {
	all := auth.AllPermissions
	want := map[string][]auth.Permission{
		auth.RoleUser:         {auth.PermAddBlock, auth.PermChangeBlock, auth.PermAddBlockEntry, auth.PermChangeBlockEntry, auth.PermRead},
		auth.RoleBlocker:      {auth.PermAddBlock, auth.PermRead},
		auth.RoleBlockManager: {auth.PermAddBlockEntry, auth.PermChangeBlockEntry, auth.PermRead},
		auth.RoleReadOnly:     {auth.PermRead},
		auth.RoleAdmin:        all,
	}
	if got := auth.Roles(); !slices.Equal(got, []string{"admin", "block-manager", "blocker", "read-only", "user"}) {
		t.Errorf("Roles() = %v", got)
	}
	for role, perms := range want {
		set := auth.PermissionsOf([]string{role})
		for _, p := range all {
			if got, w := set.Has(p), slices.Contains(perms, p); got != w {
				t.Errorf("role %s: has %s = %v, want %v", role, p, got, w)
			}
		}
	}
	// skip_whitelist belongs to admin alone.
	for _, role := range auth.Roles() {
		if role != auth.RoleAdmin && auth.PermissionsOf([]string{role}).Has(auth.PermSkipWhitelist) {
			t.Errorf("role %s has skip_whitelist", role)
		}
	}
	// Roles add up; unknown names grant nothing.
	set := auth.PermissionsOf([]string{auth.RoleBlocker, auth.RoleBlockManager, "no-such-role"})
	for _, p := range []auth.Permission{auth.PermAddBlock, auth.PermAddBlockEntry, auth.PermChangeBlockEntry, auth.PermRead} {
		if !set.Has(p) {
			t.Errorf("blocker+block-manager lacks %s", p)
		}
	}
	if set.Has(auth.PermChangeBlock) {
		t.Error("blocker+block-manager has change_block")
	}
	if len(auth.PermissionsOf([]string{"no-such-role"})) != 0 {
		t.Error("an unknown role grants permissions")
	}
	var nobody *auth.Principal
	if nobody.Can(auth.PermRead) {
		t.Error("nil principal can read")
	}
}

func TestParseRoles(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"user", []string{"user"}, ""},
		{" blocker , block-manager,blocker", []string{"blocker", "block-manager"}, ""},
		{"admin,", []string{"admin"}, ""},
		{"", nil, "at least one role"},
		{"root", nil, `unknown role "root"`},
	} {
		got, err := auth.ParseRoles(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseRoles(%q) error = %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseRoles(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestPasswordHashing(t *testing.T) {
	h, err := auth.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$2a$") {
		t.Errorf("hash %q is not bcrypt", h)
	}
	if !auth.CheckPassword(h, "correct horse") {
		t.Error("right password refused")
	}
	if auth.CheckPassword(h, "correct horsE") || auth.CheckPassword("", "") {
		t.Error("wrong password accepted")
	}
	for _, pw := range []string{"short", strings.Repeat("x", 73)} {
		if _, err := auth.HashPassword(pw); !errors.Is(err, auth.ErrWeakPassword) {
			t.Errorf("HashPassword(%d chars) error = %v, want ErrWeakPassword", len(pw), err)
		}
	}
}

func TestTokenSecret(t *testing.T) {
	s1, h1, err := auth.NewTokenSecret()
	if err != nil {
		t.Fatal(err)
	}
	s2, _, _ := auth.NewTokenSecret()
	if s1 == s2 {
		t.Fatal("two tokens are equal")
	}
	if !regexp.MustCompile(`^bhrd_[0-9a-f]{64}$`).MatchString(s1) {
		t.Errorf("secret %q has the wrong shape", s1)
	}
	sum := sha256.Sum256([]byte(s1))
	if h1 != hex.EncodeToString(sum[:]) || auth.HashToken(s1) != h1 {
		t.Errorf("hash %q is not the hex SHA-256 of the secret", h1)
	}
}

func TestValidateUsername(t *testing.T) {
	for _, ok := range []string{"alice", "zeek.sensor-1", "a@b+c_d", strings.Repeat("a", 150)} {
		if err := auth.ValidateUsername(ok); err != nil {
			t.Errorf("ValidateUsername(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a:b", "a b", "é", strings.Repeat("a", 151)} {
		if err := auth.ValidateUsername(bad); !errors.Is(err, auth.ErrInvalidUsername) {
			t.Errorf("ValidateUsername(%q) = %v, want ErrInvalidUsername", bad, err)
		}
	}
}

// countingStore counts the lookups the Authenticator makes.
type countingStore struct {
	auth.Store
	byName, byHash, byID atomic.Int64
}

func (s *countingStore) GetUserByName(ctx context.Context, n string) (auth.User, error) {
	s.byName.Add(1)
	return s.Store.GetUserByName(ctx, n)
}

func (s *countingStore) GetTokenByHash(ctx context.Context, h string) (auth.Token, error) {
	s.byHash.Add(1)
	return s.Store.GetTokenByHash(ctx, h)
}

func (s *countingStore) GetUser(ctx context.Context, id int64) (auth.User, error) {
	s.byID.Add(1)
	return s.Store.GetUser(ctx, id)
}

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func newStore(t *testing.T) *sqlitestore.Store {
	t.Helper()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "bhrd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

func newAuth(t *testing.T) (*auth.Authenticator, *countingStore, *fakeNow) {
	cs := &countingStore{Store: newStore(t)}
	clk := &fakeNow{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return auth.NewAuthenticator(cs, auth.AuthenticatorOptions{CacheTTL: 10 * time.Second, Now: clk.Now}), cs, clk
}

func TestBasic(t *testing.T) {
	a, cs, clk := newAuth(t)
	u, err := a.AddUser(ctx, "alice", "s3cret-password", []string{auth.RoleBlocker, auth.RoleBlocker})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(u.Roles, []string{auth.RoleBlocker}) || u.PasswordHash == "" || u.ID == 0 {
		t.Fatalf("AddUser = %+v", u)
	}
	if _, err := a.AddUser(ctx, "tokenonly", "", []string{auth.RoleReadOnly}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddUser(ctx, "alice", "another-password", []string{auth.RoleUser}); !errors.Is(err, auth.ErrDuplicate) {
		t.Errorf("duplicate AddUser error = %v, want ErrDuplicate", err)
	}
	if _, err := a.AddUser(ctx, "bob", "another-password", []string{"root"}); err == nil {
		t.Error("AddUser with an unknown role succeeded")
	}
	if _, err := a.AddUser(ctx, "bob", "short", []string{auth.RoleUser}); !errors.Is(err, auth.ErrWeakPassword) {
		t.Errorf("AddUser with a short password: %v", err)
	}

	p, err := a.Basic(ctx, "alice", "s3cret-password")
	if err != nil {
		t.Fatal(err)
	}
	if p.Username != "alice" || p.UserID != u.ID || p.TokenID != 0 || !p.Can(auth.PermAddBlock) || p.Can(auth.PermChangeBlock) {
		t.Errorf("principal = %+v", p)
	}
	for _, c := range []struct{ user, pw string }{
		{"alice", "wrong-password"},
		{"nobody", "s3cret-password"},
		{"tokenonly", ""},
		{"tokenonly", "anything-at-all"},
		{"", "s3cret-password"},
	} {
		if _, err := a.Basic(ctx, c.user, c.pw); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("Basic(%q, %q) error = %v, want ErrInvalidCredentials", c.user, c.pw, err)
		}
	}

	// The success is cached: no store lookup (and no bcrypt) until the TTL.
	before := cs.byName.Load()
	for range 5 {
		if _, err := a.Basic(ctx, "alice", "s3cret-password"); err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.byName.Load() - before; n != 0 {
		t.Errorf("cached Basic made %d lookups", n)
	}
	clk.Advance(11 * time.Second)
	if _, err := a.Basic(ctx, "alice", "s3cret-password"); err != nil {
		t.Fatal(err)
	}
	if n := cs.byName.Load() - before; n != 1 {
		t.Errorf("Basic after the TTL made %d lookups, want 1", n)
	}
	// A wrong password is never answered from the cache.
	if _, err := a.Basic(ctx, "alice", "s3cret-passwor"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("wrong password after caching: %v", err)
	}

	// Disabling through the Authenticator applies at once.
	if err := a.SetDisabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Basic(ctx, "alice", "s3cret-password"); !errors.Is(err, auth.ErrUserDisabled) {
		t.Errorf("disabled user: %v, want ErrUserDisabled", err)
	}
	if err := a.SetDisabled(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	// A password change applies at once, and the old one stops working.
	if err := a.SetPassword(ctx, "alice", "brand-new-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Basic(ctx, "alice", "s3cret-password"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("old password after change: %v", err)
	}
	if _, err := a.Basic(ctx, "alice", "brand-new-password"); err != nil {
		t.Errorf("new password: %v", err)
	}
}

func TestToken(t *testing.T) {
	a, cs, clk := newAuth(t)
	if _, err := a.AddUser(ctx, "enforcer", "", []string{auth.RoleBlockManager}); err != nil {
		t.Fatal(err)
	}
	secret, tok, err := a.CreateToken(ctx, "enforcer", "exabgp")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Hash != auth.HashToken(secret) || tok.Username != "enforcer" || tok.Name != "exabgp" {
		t.Errorf("token = %+v", tok)
	}
	stored, err := a.Store().ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stored {
		if strings.Contains(st.Hash, secret) || st.Hash == secret {
			t.Error("the secret is stored")
		}
	}
	if _, _, err := a.CreateToken(ctx, "nobody", ""); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("token for unknown user: %v", err)
	}

	p, err := a.Token(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if p.Username != "enforcer" || p.TokenID != tok.ID || !p.Can(auth.PermAddBlockEntry) || p.Can(auth.PermAddBlock) {
		t.Errorf("principal = %+v", p)
	}
	for _, bad := range []string{"", "bhrd_00", secret + "x", strings.TrimPrefix(secret, "bhrd_")} {
		if _, err := a.Token(ctx, bad); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("Token(%q) error = %v", bad, err)
		}
	}

	// Cached: no lookups until the TTL.
	h, id := cs.byHash.Load(), cs.byID.Load()
	if _, err := a.Token(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if cs.byHash.Load() != h || cs.byID.Load() != id {
		t.Error("cached token made lookups")
	}

	// A revocation by another process (straight to the store) applies
	// when the cache entry expires.
	if err := a.Store().RevokeToken(ctx, tok.ID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Token(ctx, secret); err != nil {
		t.Errorf("revoked elsewhere, within the TTL: %v (want the cached success)", err)
	}
	clk.Advance(10 * time.Second)
	if _, err := a.Token(ctx, secret); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("revoked token after the TTL: %v", err)
	}

	// A revocation through the Authenticator applies at once.
	secret2, tok2, err := a.CreateToken(ctx, "enforcer", "second")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Token(ctx, secret2); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeToken(ctx, tok2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Token(ctx, secret2); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("token revoked in process: %v", err)
	}
	if err := a.RevokeToken(ctx, 9999); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("revoke unknown token: %v", err)
	}

	// A disabled user's tokens stop working.
	secret3, _, err := a.CreateToken(ctx, "enforcer", "third")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetDisabled(ctx, "enforcer", true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Token(ctx, secret3); !errors.Is(err, auth.ErrUserDisabled) {
		t.Errorf("token of a disabled user: %v", err)
	}
}

func TestCacheDisabledAndBounded(t *testing.T) {
	cs := &countingStore{Store: newStore(t)}
	a := auth.NewAuthenticator(cs, auth.AuthenticatorOptions{CacheTTL: -1})
	if _, err := a.AddUser(ctx, "u", "", []string{auth.RoleReadOnly}); err != nil {
		t.Fatal(err)
	}
	secret, _, err := a.CreateToken(ctx, "u", "")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.Token(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.byHash.Load(); n != 3 {
		t.Errorf("with the cache off, 3 checks made %d lookups", n)
	}

	// A bounded cache keeps working when full.
	b := auth.NewAuthenticator(cs, auth.AuthenticatorOptions{MaxCacheEntries: 2})
	var secrets []string
	for range 5 {
		s, _, err := b.CreateToken(ctx, "u", "")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, s)
	}
	for _, s := range secrets {
		if _, err := b.Token(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range secrets {
		if _, err := b.Token(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}

func TestContext(t *testing.T) {
	if auth.FromContext(ctx) != nil {
		t.Error("empty context has a principal")
	}
	p := &auth.Principal{Username: "x"}
	if auth.FromContext(auth.NewContext(ctx, p)) != p {
		t.Error("principal lost")
	}
}
