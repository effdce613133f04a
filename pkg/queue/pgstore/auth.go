package pgstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

const userCols = `id, username, password_hash, roles, disabled, created`

func scanUser(r scanner) (auth.User, error) {
	var u auth.User
	err := r.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.Roles, &u.Disabled, &u.Created)
	u.Created = u.Created.UTC()
	return u, err
}

// roles never stores NULL: nil is the empty list.
func roles(r []string) []string {
	if r == nil {
		return []string{}
	}
	return r
}

// CreateUser implements auth.Store.
func (s *Store) CreateUser(ctx context.Context, u auth.User) (auth.User, error) {
	created := u.Created
	if created.IsZero() {
		created = time.Now()
	}
	out, err := scanUser(s.pool.QueryRow(ctx,
		`INSERT INTO users (username, password_hash, roles, disabled, created) VALUES ($1, $2, $3, $4, $5) RETURNING `+userCols,
		u.Username, u.PasswordHash, roles(u.Roles), u.Disabled, created.UTC()))
	if err != nil {
		if isUniqueViolation(err) {
			return auth.User{}, fmt.Errorf("user %q: %w", u.Username, auth.ErrDuplicate)
		}
		return auth.User{}, fmt.Errorf("create user %q: %w", u.Username, err)
	}
	return out, nil
}

// GetUser implements auth.Store.
func (s *Store) GetUser(ctx context.Context, id int64) (auth.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	if err != nil {
		return auth.User{}, mapErr("user "+strconv.FormatInt(id, 10), err, auth.ErrNotFound)
	}
	return u, nil
}

// GetUserByName implements auth.Store.
func (s *Store) GetUserByName(ctx context.Context, username string) (auth.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE username = $1`, username))
	if err != nil {
		return auth.User{}, mapErr(fmt.Sprintf("user %q", username), err, auth.ErrNotFound)
	}
	return u, nil
}

// ListUsers implements auth.Store, in id order.
func (s *Store) ListUsers(ctx context.Context) ([]auth.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	us, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (auth.User, error) { return scanUser(r) })
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

// UpdateUser implements auth.Store.
func (s *Store) UpdateUser(ctx context.Context, u auth.User) error {
	// The notification (sent at commit) makes other processes forget
	// their cached authentications at once: a disabled user or a new
	// password takes effect everywhere.
	var n int64
	err := s.pool.QueryRow(ctx, `WITH u AS (
		UPDATE users SET password_hash = $2, roles = $3, disabled = $4 WHERE id = $1 RETURNING 1
	) SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify('`+Channel+`', 'auth')::text END FROM u`,
		u.ID, u.PasswordHash, roles(u.Roles), u.Disabled).Scan(&n, nil)
	if err != nil {
		return fmt.Errorf("update user %d: %w", u.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("update user %d: %w", u.ID, auth.ErrNotFound)
	}
	return nil
}

const tokenCols = `t.id, t.user_id, u.username, t.name, t.hash, t.created, t.revoked`

func scanToken(r scanner) (auth.Token, error) {
	var t auth.Token
	var revoked pgtype.Timestamptz
	err := r.Scan(&t.ID, &t.UserID, &t.Username, &t.Name, &t.Hash, &t.Created, &revoked)
	t.Created, t.Revoked = t.Created.UTC(), tsOut(revoked)
	return t, err
}

// CreateToken implements auth.Store. An unknown user wraps ErrNotFound, a
// hash already stored ErrDuplicate.
func (s *Store) CreateToken(ctx context.Context, t auth.Token) (auth.Token, error) {
	created := t.Created
	if created.IsZero() {
		created = time.Now()
	}
	out, err := scanToken(s.pool.QueryRow(ctx, `
		WITH t AS (
			INSERT INTO tokens (user_id, name, hash, created, revoked) VALUES ($1, $2, $3, $4, $5)
			RETURNING id, user_id, name, hash, created, revoked
		)
		SELECT `+tokenCols+` FROM t JOIN users u ON u.id = t.user_id`,
		t.UserID, t.Name, t.Hash, created.UTC(), tsIn(t.Revoked)))
	switch {
	case err == nil:
		return out, nil
	case isUniqueViolation(err):
		return auth.Token{}, fmt.Errorf("token %q: %w", t.Name, auth.ErrDuplicate)
	case isForeignKeyViolation(err):
		return auth.Token{}, fmt.Errorf("token %q: user %d: %w", t.Name, t.UserID, auth.ErrNotFound)
	}
	return auth.Token{}, fmt.Errorf("create token %q: %w", t.Name, err)
}

// GetTokenByHash implements auth.Store.
func (s *Store) GetTokenByHash(ctx context.Context, hash string) (auth.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = $1`, hash))
	if err != nil {
		// Never echo the hash: it identifies a secret.
		return auth.Token{}, mapErr("token", err, auth.ErrNotFound)
	}
	return t, nil
}

// ListTokens implements auth.Store, in id order.
func (s *Store) ListTokens(ctx context.Context) ([]auth.Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenCols+` FROM tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (auth.Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// RevokeToken implements auth.Store.
func (s *Store) RevokeToken(ctx context.Context, id int64, at time.Time) error {
	// Notified as UpdateUser is: the token stops working everywhere.
	var n int64
	err := s.pool.QueryRow(ctx, `WITH t AS (
		UPDATE tokens SET revoked = $2 WHERE id = $1 RETURNING 1
	) SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify('`+Channel+`', 'auth')::text END FROM t`,
		id, at.UTC()).Scan(&n, nil)
	if err != nil {
		return fmt.Errorf("revoke token %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("revoke token %d: %w", id, auth.ErrNotFound)
	}
	return nil
}
