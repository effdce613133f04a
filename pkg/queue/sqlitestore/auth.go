package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
)

// Roles are stored as a JSON array so that a role name may contain any
// character, commas included.

func encodeRoles(roles []string) (string, error) {
	if roles == nil {
		roles = []string{}
	}
	b, err := json.Marshal(roles)
	if err != nil {
		return "", fmt.Errorf("encode roles: %w", err)
	}
	return string(b), nil
}

func decodeRoles(s string) ([]string, error) {
	var roles []string
	if err := json.Unmarshal([]byte(s), &roles); err != nil {
		return nil, fmt.Errorf("decode roles %q: %w", s, err)
	}
	if len(roles) == 0 {
		return nil, nil
	}
	return roles, nil
}

const userCols = `id, username, password_hash, roles, disabled, created`

func scanUser(r scanner) (auth.User, error) {
	var (
		u       auth.User
		roles   string
		created int64
	)
	if err := r.Scan(&u.ID, &u.Username, &u.PasswordHash, &roles, &u.Disabled, &created); err != nil {
		return u, err
	}
	var err error
	if u.Roles, err = decodeRoles(roles); err != nil {
		return u, err
	}
	u.Created = fromMicros(created)
	return u, nil
}

// CreateUser implements auth.Store. Created defaults to the current time.
func (s *Store) CreateUser(ctx context.Context, u auth.User) (auth.User, error) {
	if u.Created.IsZero() {
		u.Created = time.Now()
	}
	u.Created = truncTime(u.Created)
	roles, err := encodeRoles(u.Roles)
	if err != nil {
		return auth.User{}, err
	}
	err = s.write(ctx, func(t *txn) error {
		res, err := t.exec(`INSERT INTO users (username, password_hash, roles, disabled, created) VALUES (?, ?, ?, ?, ?)`,
			u.Username, u.PasswordHash, roles, u.Disabled, micros(u.Created))
		if isUnique(err) {
			return auth.ErrDuplicate
		}
		if err != nil {
			return err
		}
		u.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return auth.User{}, fmt.Errorf("create user %q: %w", u.Username, err)
	}
	return u, nil
}

func (s *Store) getUser(ctx context.Context, what, where string, arg any) (auth.User, error) {
	u, err := scanUser(s.rdb.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return auth.User{}, fmt.Errorf("user %s: %w", what, auth.ErrNotFound)
	}
	if err != nil {
		return auth.User{}, fmt.Errorf("get user %s: %w", what, err)
	}
	return u, nil
}

// GetUser implements auth.Store.
func (s *Store) GetUser(ctx context.Context, id int64) (auth.User, error) {
	return s.getUser(ctx, fmt.Sprint(id), `id = ?`, id)
}

// GetUserByName implements auth.Store.
func (s *Store) GetUserByName(ctx context.Context, username string) (auth.User, error) {
	return s.getUser(ctx, fmt.Sprintf("%q", username), `username = ?`, username)
}

// ListUsers implements auth.Store.
func (s *Store) ListUsers(ctx context.Context) ([]auth.User, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []auth.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// UpdateUser implements auth.Store.
func (s *Store) UpdateUser(ctx context.Context, u auth.User) error {
	roles, err := encodeRoles(u.Roles)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(t *txn) error {
		res, err := t.exec(`UPDATE users SET password_hash = ?, roles = ?, disabled = ? WHERE id = ?`,
			u.PasswordHash, roles, u.Disabled, u.ID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return auth.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update user %d: %w", u.ID, err)
	}
	return nil
}

const tokenCols = `t.id, t.user_id, u.username, t.name, t.hash, t.created, t.revoked`

func scanToken(r scanner) (auth.Token, error) {
	var (
		t       auth.Token
		created int64
		revoked sql.NullInt64
	)
	if err := r.Scan(&t.ID, &t.UserID, &t.Username, &t.Name, &t.Hash, &created, &revoked); err != nil {
		return t, err
	}
	t.Created = fromMicros(created)
	t.Revoked = fromNullMicros(revoked)
	return t, nil
}

// CreateToken implements auth.Store. An unknown user wraps auth.ErrNotFound,
// a hash already stored wraps auth.ErrDuplicate. Created defaults to the
// current time.
func (s *Store) CreateToken(ctx context.Context, tk auth.Token) (auth.Token, error) {
	if tk.Created.IsZero() {
		tk.Created = time.Now()
	}
	tk.Created = truncTime(tk.Created)
	tk.Revoked = truncTime(tk.Revoked)
	err := s.write(ctx, func(t *txn) error {
		row := t.queryRow(`SELECT username FROM users WHERE id = ?`, tk.UserID)
		if err := row.Scan(&tk.Username); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %d: %w", tk.UserID, auth.ErrNotFound)
		} else if err != nil {
			return err
		}
		res, err := t.exec(`INSERT INTO tokens (user_id, name, hash, created, revoked) VALUES (?, ?, ?, ?, ?)`,
			tk.UserID, tk.Name, tk.Hash, micros(tk.Created), nullMicros(tk.Revoked))
		if isUnique(err) {
			return auth.ErrDuplicate
		}
		if err != nil {
			return err
		}
		tk.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return auth.Token{}, fmt.Errorf("create token %q: %w", tk.Name, err)
	}
	return tk, nil
}

// GetTokenByHash implements auth.Store.
func (s *Store) GetTokenByHash(ctx context.Context, hash string) (auth.Token, error) {
	t, err := scanToken(s.rdb.QueryRowContext(ctx, `SELECT `+tokenCols+`
		FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		// The hash is a credential: keep it out of the error.
		return auth.Token{}, fmt.Errorf("token: %w", auth.ErrNotFound)
	}
	if err != nil {
		return auth.Token{}, fmt.Errorf("get token: %w", err)
	}
	return t, nil
}

// ListTokens implements auth.Store.
func (s *Store) ListTokens(ctx context.Context) ([]auth.Token, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+tokenCols+`
		FROM tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []auth.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken implements auth.Store. A zero at means now: a zero time
// would read back as "not revoked".
func (s *Store) RevokeToken(ctx context.Context, id int64, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	err := s.write(ctx, func(t *txn) error {
		res, err := t.exec(`UPDATE tokens SET revoked = ? WHERE id = ?`, micros(at), id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return auth.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke token %d: %w", id, err)
	}
	return nil
}
