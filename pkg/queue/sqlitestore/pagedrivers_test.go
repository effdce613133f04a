package sqlitestore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// Whatever set drives a page read, it finds the same rows as the
// default query: pages read over sources, ranges, expired and expected
// blocks, under each driver.
func TestPageDriversAgree(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var bs []queue.Block
	for i := range 300 {
		cidr := fmt.Sprintf("198.18.%d.%d/32", i/250, i%250)
		if i%3 == 0 {
			cidr = fmt.Sprintf("10.0.%d.%d/32", i/250, i%250)
		}
		end := t0.Add(time.Hour)
		switch i % 5 {
		case 0:
			end = t0.Add(-time.Minute) // expired
		case 1:
			end = time.Time{} // indefinite
		}
		b := blk(cidr, t0.Add(-2*time.Hour), end)
		b.Source = []string{"ids", "web", "cli", "waf"}[i%4]
		bs = append(bs, b)
	}
	bs = insert(t, s, t0.Add(-2*time.Hour), bs...)
	var cases []queue.ListOptions
	for _, f := range []queue.BlockFilter{queue.FilterAll, queue.FilterExpected, queue.FilterPending} {
		for _, src := range []string{"", "web"} {
			for _, within := range []string{"", "10.0.0.0/8", "198.18.1.0/24"} {
				for _, after := range []int64{0, 150} {
					o := queue.ListOptions{Filter: f, Source: src, Descending: true, Limit: 20, AfterID: after, Now: t0}
					if within != "" {
						o.Within = pfx(within)
					}
					cases = append(cases, o)
					o.ExcludeSources = []string{"web", "cli"}
					o.Source = ""
					cases = append(cases, o)
				}
			}
		}
	}
	list := func(o queue.ListOptions, drv driver) []int64 {
		t.Helper()
		var out []int64
		if err := s.listBlocks(ctx, o, drv, func(b queue.Block) error { out = append(out, b.ID); return nil }); err != nil {
			t.Fatalf("%+v driver %d: %v", o, drv, err)
		}
		return out
	}
	newest := bs[len(bs)-1].ID
	s.pageWindow = 37
	nonEmpty := 0
	for _, o := range cases {
		want := list(o, driveDefault)
		if len(want) > 0 {
			nonEmpty++
		}
		for _, drv := range []driver{driveWalk, driveRange, driveExpected, driveRangeIDs} {
			if got := list(o, drv); !slices.Equal(got, want) {
				t.Errorf("%+v driver %d: %v, want %v", o, drv, got, want)
			}
		}
		// A walk over a window of 37 ids, then the prefix's id list.
		var got []int64
		if err := s.walkWindow(ctx, o, newest, func(b queue.Block) error { got = append(got, b.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v windowed: %v, want %v", o, got, want)
		}
		if !o.IsPage() {
			t.Errorf("%+v is a page read", o)
		}
	}
	if nonEmpty < len(cases)/2 {
		t.Fatalf("only %d of %d cases found rows: the test proves little", nonEmpty, len(cases))
	}
}

// A prefix holding more than queue.PageProbe blocks, all older than the
// walk's window: the page is read from the prefix's ids and is the one
// the default query finds.
func TestPageWindowOverOldPrefix(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var bs []queue.Block
	for i := range queue.PageProbe + 100 {
		bs = append(bs, blk(fmt.Sprintf("10.9.%d.%d/32", i/250, i%250), t0.Add(-2*time.Hour), t0.Add(time.Hour)))
	}
	for i := range 100 {
		bs = append(bs, blk(fmt.Sprintf("198.51.100.%d/32", i), t0.Add(-time.Hour), t0.Add(time.Hour)))
	}
	bs = insert(t, s, t0.Add(-2*time.Hour), bs...)
	s.pageWindow = 37
	for _, o := range []queue.ListOptions{
		{Within: pfx("10.9.0.0/16"), Descending: true, Limit: 20, Now: t0},
		{Within: pfx("10.9.0.0/16"), Filter: queue.FilterExpected, Descending: true, Limit: 20, Now: t0},
		{Within: pfx("10.9.0.0/16"), Descending: true, Limit: 20, AfterID: bs[3000].ID, Now: t0},
	} {
		drv, newest, err := s.pageDriver(ctx, o)
		if err != nil || drv != driveWalk || newest != bs[len(bs)-1].ID {
			t.Fatalf("%+v: pageDriver %d %d %v, want a walk from %d", o, drv, newest, err, bs[len(bs)-1].ID)
		}
		var got, want []int64
		if err := s.ListBlocks(ctx, o, func(b queue.Block) error { got = append(got, b.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.listBlocks(ctx, o, driveDefault, func(b queue.Block) error { want = append(want, b.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(want) != 20 || !slices.Equal(got, want) {
			t.Errorf("%+v: %v, want %v", o, got, want)
		}
	}
}
