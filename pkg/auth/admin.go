package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrInvalidUsername is returned for usernames outside the allowed syntax.
var ErrInvalidUsername = errors.New("invalid username")

// MaxUsernameLength is Django's limit, so BHR's usernames fit.
const MaxUsernameLength = 150

// ValidateUsername applies Django's username rule: 1-150 letters, digits
// and @ . + - _ (a colon would break HTTP Basic).
func ValidateUsername(name string) error {
	if name == "" || len(name) > MaxUsernameLength {
		return fmt.Errorf("%w %q: must be 1 to %d characters", ErrInvalidUsername, name, MaxUsernameLength)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '@' || r == '.' || r == '+' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("%w %q: only letters, digits and @ . + - _ are allowed", ErrInvalidUsername, name)
		}
	}
	return nil
}

// AddUser creates a user with roles and, unless password is empty, a
// password (a user without one can only use tokens).
func (a *Authenticator) AddUser(ctx context.Context, username, password string, roles []string) (User, error) {
	if err := ValidateUsername(username); err != nil {
		return User{}, err
	}
	if len(roles) == 0 {
		return User{}, fmt.Errorf("add user %q: at least one role is required", username)
	}
	var uniq []string
	for _, r := range roles {
		if !ValidRole(r) {
			return User{}, fmt.Errorf("add user %q: unknown role %q", username, r)
		}
		if !slices.Contains(uniq, r) {
			uniq = append(uniq, r)
		}
	}
	u := User{Username: username, Roles: uniq, Created: a.now()}
	if password != "" {
		h, err := HashPassword(password)
		if err != nil {
			return User{}, fmt.Errorf("add user %q: %w", username, err)
		}
		u.PasswordHash = h
	}
	u, err := a.store.CreateUser(ctx, u)
	if err != nil {
		return User{}, err
	}
	a.Invalidate()
	return u, nil
}

// SetDisabled disables (or re-enables) a user; a disabled user's
// passwords and tokens stop working.
func (a *Authenticator) SetDisabled(ctx context.Context, username string, disabled bool) error {
	u, err := a.store.GetUserByName(ctx, username)
	if err != nil {
		return err
	}
	u.Disabled = disabled
	if err := a.store.UpdateUser(ctx, u); err != nil {
		return err
	}
	a.Invalidate()
	return nil
}

// SetPassword replaces a user's password.
func (a *Authenticator) SetPassword(ctx context.Context, username, password string) error {
	u, err := a.store.GetUserByName(ctx, username)
	if err != nil {
		return err
	}
	h, err := HashPassword(password)
	if err != nil {
		return fmt.Errorf("set password of %q: %w", username, err)
	}
	u.PasswordHash = h
	if err := a.store.UpdateUser(ctx, u); err != nil {
		return err
	}
	a.Invalidate()
	return nil
}

// CreateToken creates an API token for username and returns its secret,
// which is not stored anywhere and cannot be shown again.
func (a *Authenticator) CreateToken(ctx context.Context, username, name string) (string, Token, error) {
	u, err := a.store.GetUserByName(ctx, username)
	if err != nil {
		return "", Token{}, err
	}
	secret, hash, err := NewTokenSecret()
	if err != nil {
		return "", Token{}, err
	}
	t, err := a.store.CreateToken(ctx, Token{UserID: u.ID, Name: name, Hash: hash, Created: a.now()})
	if err != nil {
		return "", Token{}, err
	}
	return secret, t, nil
}

// RevokeToken revokes a token by id. It stops working at once in this
// process, at once in other bhrd sharing a PostgreSQL store (its change
// notification makes them Invalidate), and within DefaultCacheTTL (or
// the configured TTL) in any other process.
func (a *Authenticator) RevokeToken(ctx context.Context, id int64) error {
	at := a.now()
	if at.IsZero() {
		at = time.Now()
	}
	if err := a.store.RevokeToken(ctx, id, at); err != nil {
		return err
	}
	a.Invalidate()
	return nil
}
