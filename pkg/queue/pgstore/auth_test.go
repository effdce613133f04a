package pgstore

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
)

func TestAuthStore(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)

	alice, err := s.CreateUser(ctx, auth.User{Username: "alice", PasswordHash: "$2a$xyz", Roles: []string{"admin", "blocker"}, Created: at(1)})
	if err != nil {
		t.Fatal(err)
	}
	want := auth.User{ID: alice.ID, Username: "alice", PasswordHash: "$2a$xyz", Roles: []string{"admin", "blocker"}, Created: at(1)}
	if alice.ID == 0 || !reflect.DeepEqual(alice, want) {
		t.Fatalf("created %+v", alice)
	}
	before := time.Now().Add(-time.Second)
	bob, err := s.CreateUser(ctx, auth.User{Username: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if bob.Created.Before(before) || bob.Created.Location() != time.UTC || bob.Roles == nil {
		t.Fatalf("bob = %+v: want Created set now (UTC) and empty roles", bob)
	}
	if _, err := s.CreateUser(ctx, auth.User{Username: "alice"}); !errors.Is(err, auth.ErrDuplicate) {
		t.Fatalf("duplicate username: %v", err)
	}
	if got, err := s.GetUser(ctx, alice.ID); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetUser = %+v, %v", got, err)
	}
	if got, err := s.GetUserByName(ctx, "alice"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetUserByName = %+v, %v", got, err)
	}
	if _, err := s.GetUser(ctx, 9999); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("GetUser unknown: %v", err)
	}
	if _, err := s.GetUserByName(ctx, "nobody"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("GetUserByName unknown: %v", err)
	}

	want.PasswordHash, want.Roles, want.Disabled = "", []string{"reader"}, true
	upd := want
	upd.Username = "renamed" // not written
	upd.Created = at(99)     // not written
	if err := s.UpdateUser(ctx, upd); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetUser(ctx, alice.ID); !reflect.DeepEqual(got, want) {
		t.Fatalf("after update %+v\nwant %+v", got, want)
	}
	if err := s.UpdateUser(ctx, auth.User{ID: 9999}); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("UpdateUser unknown: %v", err)
	}
	if users, _ := s.ListUsers(ctx); len(users) != 2 || users[0].ID != alice.ID || users[1].ID != bob.ID {
		t.Fatalf("ListUsers = %+v", users)
	}

	tok, err := s.CreateToken(ctx, auth.Token{UserID: bob.ID, Name: "enforcer", Hash: "abc123", Created: at(5)})
	if err != nil {
		t.Fatal(err)
	}
	wantTok := auth.Token{ID: tok.ID, UserID: bob.ID, Username: "bob", Name: "enforcer", Hash: "abc123", Created: at(5)}
	if tok.ID == 0 || !reflect.DeepEqual(tok, wantTok) {
		t.Fatalf("token %+v", tok)
	}
	if _, err := s.CreateToken(ctx, auth.Token{UserID: alice.ID, Name: "dup", Hash: "abc123"}); !errors.Is(err, auth.ErrDuplicate) {
		t.Fatalf("duplicate hash: %v", err)
	}
	if _, err := s.CreateToken(ctx, auth.Token{UserID: 9999, Name: "orphan", Hash: "zzz"}); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("token for unknown user: %v", err)
	}
	tok2, err := s.CreateToken(ctx, auth.Token{UserID: alice.ID, Name: "cli", Hash: "def456"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetTokenByHash(ctx, "abc123"); err != nil || !reflect.DeepEqual(got, wantTok) {
		t.Fatalf("GetTokenByHash = %+v, %v", got, err)
	}
	if _, err := s.GetTokenByHash(ctx, "nope"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown hash: %v", err)
	}
	if err := s.RevokeToken(ctx, tok.ID, at(50)); err != nil {
		t.Fatal(err)
	}
	wantTok.Revoked = at(50)
	if got, _ := s.GetTokenByHash(ctx, "abc123"); !reflect.DeepEqual(got, wantTok) {
		t.Fatalf("revoked token = %+v", got)
	}
	if err := s.RevokeToken(ctx, 9999, at(50)); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	toks, err := s.ListTokens(ctx)
	if err != nil || len(toks) != 2 || !reflect.DeepEqual(toks[0], wantTok) || toks[1].ID != tok2.ID || toks[1].Username != "alice" {
		t.Fatalf("ListTokens = %+v, %v", toks, err)
	}
}
