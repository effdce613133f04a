package auth

import (
	"context"
	"errors"
	"time"
)

// Errors the Store returns (wrapped).
var (
	ErrNotFound  = errors.New("not found")
	ErrDuplicate = errors.New("already exists")
)

// User is an account that may call the API.
type User struct {
	ID           int64
	Username     string
	PasswordHash string   // bcrypt; empty means password login disabled
	Roles        []string // role names, see roles.go
	Disabled     bool
	Created      time.Time
}

// Token is an API token. Only a hash of the secret is stored; the secret is
// shown once, when it is created.
type Token struct {
	ID       int64
	UserID   int64
	Username string // filled by the store on reads
	Name     string // a label chosen by the operator
	Hash     string // hex SHA-256 of the secret
	Created  time.Time
	Revoked  time.Time // zero while valid
}

// Store persists users and tokens. Both queue stores implement it.
type Store interface {
	// CreateUser inserts a user (ID and Created are set by the store from
	// u.Created when non-zero); a taken username wraps ErrDuplicate.
	CreateUser(ctx context.Context, u User) (User, error)
	GetUser(ctx context.Context, id int64) (User, error)
	GetUserByName(ctx context.Context, username string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser writes PasswordHash, Roles and Disabled of the user with u.ID.
	UpdateUser(ctx context.Context, u User) error

	// CreateToken inserts a token for t.UserID.
	CreateToken(ctx context.Context, t Token) (Token, error)
	// GetTokenByHash returns the token (revoked or not) with that hash.
	GetTokenByHash(ctx context.Context, hash string) (Token, error)
	ListTokens(ctx context.Context) ([]Token, error)
	// RevokeToken sets Revoked = at; unknown id wraps ErrNotFound.
	RevokeToken(ctx context.Context, id int64, at time.Time) error
}
