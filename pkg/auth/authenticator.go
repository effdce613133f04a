package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Authentication failures. The API maps each to a 401 with a message of
// its own; none of them says whether a username exists.
var (
	// ErrInvalidCredentials: unknown user, wrong password, or an unknown or
	// revoked token.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrUserDisabled: the credentials are right but the account is disabled.
	ErrUserDisabled = errors.New("user inactive or deleted")
)

// Principal is an authenticated caller.
type Principal struct {
	UserID   int64
	Username string
	Roles    []string
	// TokenID is the token used, or 0 for a password (HTTP Basic) login,
	// and TokenCreated when that token was made (a web session's age).
	TokenID      int64
	TokenCreated time.Time
	Perms        PermissionSet
}

// Can reports whether the principal holds permission p. A nil principal
// (anonymous) holds none.
func (p *Principal) Can(perm Permission) bool {
	return p != nil && p.Perms.Has(perm)
}

type principalKey struct{}

// NewContext returns ctx carrying p, for handlers and logs.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal in ctx, or nil for an anonymous call.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// DefaultCacheTTL is how long a successful authentication is remembered.
// It bounds how long a change made by another process (a "bhrd token
// revoke" or "bhrd user disable" while the daemon runs) takes to apply;
// changes made through this Authenticator apply at once.
const DefaultCacheTTL = 10 * time.Second

// defaultCacheEntries bounds the cache's memory.
const defaultCacheEntries = 10000

// AuthenticatorOptions tune an Authenticator. The zero value is ready.
type AuthenticatorOptions struct {
	// CacheTTL: 0 means DefaultCacheTTL, negative disables the cache.
	CacheTTL time.Duration
	// MaxCacheEntries: 0 means 10000.
	MaxCacheEntries int
	// Now defaults to time.Now.
	Now func() time.Time
}

// Authenticator checks API tokens and passwords against a Store and
// administers users and tokens (so that its cache forgets what changed).
//
// Successful authentications are cached by a SHA-256 of the credentials
// for CacheTTL: a bcrypt check costs 50-100 ms of CPU, and an enforcer or
// detection tool that uses HTTP Basic would otherwise pay it on every
// request. A token check on a cache miss is a SHA-256 and two indexed
// lookups (token by hash, then its user). Failures are never cached, so a
// newly created user or token works at once.
type Authenticator struct {
	store   Store
	ttl     time.Duration
	maxSize int
	now     func() time.Time

	mu    sync.Mutex
	gen   uint64 // bumped by Invalidate; stale lookups must not refill the cache
	cache map[[32]byte]cacheEntry

	// bcryptSlots bounds concurrent bcrypt checks, so that a flood of bad
	// passwords queues instead of taking every core from the queue API.
	bcryptSlots chan struct{}
	dummyOnce   sync.Once
	dummyHash   []byte
}

type cacheEntry struct {
	p       *Principal
	expires time.Time
}

// NewAuthenticator returns an Authenticator over store.
func NewAuthenticator(store Store, opts AuthenticatorOptions) *Authenticator {
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.MaxCacheEntries <= 0 {
		opts.MaxCacheEntries = defaultCacheEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Authenticator{
		store:       store,
		ttl:         opts.CacheTTL,
		maxSize:     opts.MaxCacheEntries,
		now:         opts.Now,
		cache:       make(map[[32]byte]cacheEntry),
		bcryptSlots: make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
	}
}

// Store returns the underlying store.
func (a *Authenticator) Store() Store { return a.store }

// Invalidate forgets every cached authentication. Call it after changing
// users or tokens in the store behind the Authenticator's back.
func (a *Authenticator) Invalidate() {
	a.mu.Lock()
	a.gen++
	clear(a.cache)
	a.mu.Unlock()
}

func cacheKey(kind, a, b string) [32]byte {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(a))
	h.Write([]byte{0})
	h.Write([]byte(b))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// lookup returns a cached principal and the cache generation to pass to
// remember.
func (a *Authenticator) lookup(k [32]byte) (*Principal, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.cache[k]; ok {
		if a.now().Before(e.expires) {
			return e.p, a.gen
		}
		delete(a.cache, k)
	}
	return nil, a.gen
}

func (a *Authenticator) remember(k [32]byte, p *Principal, gen uint64) {
	if a.ttl < 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		// Invalidated while we read the store: what we read may be stale.
		return
	}
	now := a.now()
	if len(a.cache) >= a.maxSize {
		for key, e := range a.cache {
			if !now.Before(e.expires) {
				delete(a.cache, key)
			}
		}
		if len(a.cache) >= a.maxSize {
			clear(a.cache)
		}
	}
	a.cache[k] = cacheEntry{p: p, expires: now.Add(a.ttl)}
}

func principalOf(u User, t Token) *Principal {
	return &Principal{
		UserID:       u.ID,
		Username:     u.Username,
		Roles:        u.Roles,
		TokenID:      t.ID,
		TokenCreated: t.Created,
		Perms:        PermissionsOf(u.Roles),
	}
}

// Token authenticates an API token secret.
func (a *Authenticator) Token(ctx context.Context, secret string) (*Principal, error) {
	if secret == "" || !utf8.ValidString(secret) || strings.IndexByte(secret, 0) >= 0 {
		return nil, ErrInvalidCredentials
	}
	k := cacheKey("token", secret, "")
	p, gen := a.lookup(k)
	if p != nil {
		return p, nil
	}
	t, err := a.store.GetTokenByHash(ctx, HashToken(secret))
	if errors.Is(err, ErrNotFound) {
		return nil, ErrInvalidCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate token: %w", err)
	}
	if !t.Revoked.IsZero() {
		return nil, ErrInvalidCredentials
	}
	u, err := a.store.GetUser(ctx, t.UserID)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUserDisabled
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate token: %w", err)
	}
	if u.Disabled {
		return nil, ErrUserDisabled
	}
	p = principalOf(u, t)
	a.remember(k, p, gen)
	return p, nil
}

// Basic authenticates a username and password (HTTP Basic).
func (a *Authenticator) Basic(ctx context.Context, username, password string) (*Principal, error) {
	if username == "" || password == "" || !utf8.ValidString(username) || strings.IndexByte(username, 0) >= 0 {
		// No store can hold such a name; do not ask one.
		return nil, ErrInvalidCredentials
	}
	k := cacheKey("basic", username, password)
	p, gen := a.lookup(k)
	if p != nil {
		return p, nil
	}
	u, err := a.store.GetUserByName(ctx, username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("authenticate %q: %w", username, err)
	}
	found := err == nil
	hash := []byte(u.PasswordHash)
	if !found || len(hash) == 0 {
		// Spend the same time as for a real user, so that response times
		// do not tell which usernames exist.
		hash = a.dummy()
	}
	ok, err := a.compare(ctx, hash, password)
	if err != nil {
		return nil, err
	}
	if !ok || !found || u.PasswordHash == "" {
		return nil, ErrInvalidCredentials
	}
	if u.Disabled {
		return nil, ErrUserDisabled
	}
	p = principalOf(u, Token{})
	a.remember(k, p, gen)
	return p, nil
}

// compare checks password against hash; err is set only when ctx ended
// while waiting for a bcrypt slot.
func (a *Authenticator) compare(ctx context.Context, hash []byte, password string) (bool, error) {
	select {
	case a.bcryptSlots <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("authenticate: %w", ctx.Err())
	}
	defer func() { <-a.bcryptSlots }()
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil, nil
}

func (a *Authenticator) dummy() []byte {
	a.dummyOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte("no such user, no such password"), passwordCost)
		if err != nil {
			// GenerateFromPassword fails only for bad costs or long
			// passwords, neither of which applies.
			panic(err)
		}
		a.dummyHash = h
	})
	return a.dummyHash
}
