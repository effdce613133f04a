package sqlitestore

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
)

func TestUsers(t *testing.T) {
	s := newStore(t)
	u, err := s.CreateUser(ctx, auth.User{Username: "alice", PasswordHash: "$2a$hash", Roles: []string{"admin", "odd,name"}, Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	want := auth.User{ID: u.ID, Username: "alice", PasswordHash: "$2a$hash", Roles: []string{"admin", "odd,name"}, Created: t0.Truncate(time.Microsecond)}
	if u.ID <= 0 || !reflect.DeepEqual(u, want) {
		t.Errorf("created %+v, want %+v", u, want)
	}
	if _, err := s.CreateUser(ctx, auth.User{Username: "alice"}); !errors.Is(err, auth.ErrDuplicate) {
		t.Errorf("duplicate username: %v, want ErrDuplicate", err)
	}
	before := time.Now().Add(-time.Second)
	bob, err := s.CreateUser(ctx, auth.User{Username: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if bob.Created.Before(before) || bob.Created.After(time.Now().Add(time.Second)) || bob.Created.Location() != time.UTC {
		t.Errorf("default created %v", bob.Created)
	}
	if got, err := s.GetUser(ctx, u.ID); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("GetUser = %+v, %v", got, err)
	}
	if got, err := s.GetUserByName(ctx, "bob"); err != nil || !reflect.DeepEqual(got, bob) {
		t.Errorf("GetUserByName = %+v, %v; want %+v", got, err, bob)
	}
	if _, err := s.GetUser(ctx, 999); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("GetUser(unknown) = %v", err)
	}
	if _, err := s.GetUserByName(ctx, "carol"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("GetUserByName(unknown) = %v", err)
	}

	upd := want
	upd.Username = "ignored"
	upd.PasswordHash = ""
	upd.Roles = []string{"blocker"}
	upd.Disabled = true
	if err := s.UpdateUser(ctx, upd); err != nil {
		t.Fatal(err)
	}
	want.PasswordHash, want.Roles, want.Disabled = "", []string{"blocker"}, true
	if got, _ := s.GetUser(ctx, u.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("after update %+v, want %+v", got, want)
	}
	if err := s.UpdateUser(ctx, auth.User{ID: 999}); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("UpdateUser(unknown) = %v", err)
	}
	list, err := s.ListUsers(ctx)
	if err != nil || !reflect.DeepEqual(list, []auth.User{want, bob}) {
		t.Errorf("ListUsers = %+v, %v", list, err)
	}
}

func TestTokens(t *testing.T) {
	s := newStore(t)
	u, err := s.CreateUser(ctx, auth.User{Username: "enforcer", Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := s.CreateToken(ctx, auth.Token{UserID: u.ID, Name: "bgp1", Hash: "aa11", Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	want := auth.Token{ID: tk.ID, UserID: u.ID, Username: "enforcer", Name: "bgp1", Hash: "aa11", Created: t0.Truncate(time.Microsecond)}
	if tk.ID <= 0 || !reflect.DeepEqual(tk, want) {
		t.Errorf("created %+v, want %+v", tk, want)
	}
	if _, err := s.CreateToken(ctx, auth.Token{UserID: u.ID, Name: "again", Hash: "aa11"}); !errors.Is(err, auth.ErrDuplicate) {
		t.Errorf("duplicate hash: %v, want ErrDuplicate", err)
	}
	if _, err := s.CreateToken(ctx, auth.Token{UserID: 999, Name: "x", Hash: "bb22"}); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("unknown user: %v, want ErrNotFound", err)
	}
	tk2, err := s.CreateToken(ctx, auth.Token{UserID: u.ID, Name: "bgp2", Hash: "cc33", Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetTokenByHash(ctx, "aa11"); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("GetTokenByHash = %+v, %v", got, err)
	}
	if _, err := s.GetTokenByHash(ctx, "nope"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("GetTokenByHash(unknown) = %v", err)
	}
	at := t0.Add(time.Hour)
	if err := s.RevokeToken(ctx, tk.ID, at); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, 999, at); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v", err)
	}
	want.Revoked = at.Truncate(time.Microsecond)
	// A revoked token is still found, so that the caller can tell why it
	// is refused.
	if got, err := s.GetTokenByHash(ctx, "aa11"); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("revoked token = %+v, %v; want %+v", got, err, want)
	}
	list, err := s.ListTokens(ctx)
	if err != nil || !reflect.DeepEqual(list, []auth.Token{want, tk2}) {
		t.Errorf("ListTokens = %+v, %v", list, err)
	}
}
