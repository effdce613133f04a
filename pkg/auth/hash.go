package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// passwordCost is the bcrypt cost of new password hashes (about 50-100 ms
// on one core). Tests in this package lower it.
var passwordCost = bcrypt.DefaultCost

// Password length limits. bcrypt ignores everything past 72 bytes, so a
// longer password is refused rather than silently truncated.
const (
	MinPasswordLength = 8
	MaxPasswordBytes  = 72
)

// ErrWeakPassword is returned for passwords outside the length limits.
var ErrWeakPassword = errors.New("unacceptable password")

// HashPassword returns the bcrypt hash of password.
func HashPassword(password string) (string, error) {
	if utf8.RuneCountInString(password) < MinPasswordLength {
		return "", fmt.Errorf("%w: shorter than %d characters", ErrWeakPassword, MinPasswordLength)
	}
	if len(password) > MaxPasswordBytes {
		return "", fmt.Errorf("%w: longer than %d bytes (bcrypt would ignore the rest)", ErrWeakPassword, MaxPasswordBytes)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), passwordCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches a bcrypt hash.
func CheckPassword(hash, password string) bool {
	if hash == "" {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// TokenPrefix starts every API token, so that a leaked token is easy to
// recognise (and to grep for in logs and repositories).
const TokenPrefix = "bhrd_"

// tokenBytes is the entropy of a token.
const tokenBytes = 32

// NewTokenSecret returns a new random token secret and its hash. The
// secret is shown once and never stored; only the hash is.
func NewTokenSecret() (secret, hash string, err error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("token secret: %w", err)
	}
	secret = TokenPrefix + hex.EncodeToString(b)
	return secret, HashToken(secret), nil
}

// HashToken returns the hex SHA-256 of a token secret, the only form in
// which tokens are stored. A plain hash (not bcrypt) is enough: the secret
// has 256 bits of entropy, so it cannot be guessed from the hash, and the
// lookup must be cheap on every request.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
