package pgstore

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/bhrd/bhrd/pkg/queue"
)

func TestWhitelistCRUD(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if got, err := s.ListWhitelist(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty list = %v, %v", got, err)
	}
	a, err := s.AddWhitelist(ctx, queue.WhitelistEntry{CIDR: pfx("192.0.2.0/24"), Who: "admin", Why: "ours", Added: at(1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.AddWhitelist(ctx, queue.WhitelistEntry{CIDR: pfx("2001:db8::/32"), Who: "admin", Why: "v6", Added: at(2)})
	if err != nil {
		t.Fatal(err)
	}
	want := queue.WhitelistEntry{ID: a.ID, CIDR: pfx("192.0.2.0/24"), Who: "admin", Why: "ours", Added: at(1)}
	if a.ID == 0 || b.ID <= a.ID || !reflect.DeepEqual(a, want) {
		t.Fatalf("added %+v, %+v", a, b)
	}
	if got, err := s.GetWhitelist(ctx, a.ID); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("get = %+v, %v", got, err)
	}
	if got, _ := s.ListWhitelist(ctx); !reflect.DeepEqual(got, []queue.WhitelistEntry{a, b}) {
		t.Fatalf("list = %+v", got)
	}
	if err := s.DeleteWhitelist(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWhitelist(ctx, a.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.GetWhitelist(ctx, a.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("get deleted: %v, want ErrNotFound", err)
	}
	if got, _ := s.ListWhitelist(ctx); !reflect.DeepEqual(got, []queue.WhitelistEntry{b}) {
		t.Fatalf("list after delete = %+v", got)
	}
}

func TestSourceBlacklistCRUD(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	a, err := s.AddSourceBlacklist(ctx, queue.SourceBlacklistEntry{Source: "noisy", Who: "admin", Why: "false positives", Added: at(1)})
	if err != nil {
		t.Fatal(err)
	}
	if want := (queue.SourceBlacklistEntry{ID: a.ID, Source: "noisy", Who: "admin", Why: "false positives", Added: at(1)}); a.ID == 0 || !reflect.DeepEqual(a, want) {
		t.Fatalf("added %+v", a)
	}
	if _, err := s.AddSourceBlacklist(ctx, queue.SourceBlacklistEntry{Source: "noisy", Added: at(2)}); !errors.Is(err, queue.ErrDuplicate) {
		t.Fatalf("duplicate: %v, want ErrDuplicate", err)
	}
	b, err := s.AddSourceBlacklist(ctx, queue.SourceBlacklistEntry{Source: "other", Added: at(3)})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ListSourceBlacklist(ctx); !reflect.DeepEqual(got, []queue.SourceBlacklistEntry{a, b}) {
		t.Fatalf("list = %+v", got)
	}
	if err := s.DeleteSourceBlacklist(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSourceBlacklist(ctx, a.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	// The source is free again.
	if _, err := s.AddSourceBlacklist(ctx, queue.SourceBlacklistEntry{Source: "noisy", Added: at(4)}); err != nil {
		t.Fatal(err)
	}
}
