package queuetest

import (
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// runPageReads checks the selections the web pages use: sources left
// out, a text in why, an id window, and blocks added per day.
func runPageReads(t *testing.T, newStore func(t *testing.T) queue.Store) {
	t.Run("PageSelections", func(t *testing.T) {
		e := NewEnv(t, newStore, nil)
		add := func(cidr, source, why string) int64 {
			r := Req(cidr, "1h")
			r.Source, r.Why = source, why
			return e.MustBlock(r).Block.ID
		}
		first := add("192.0.2.1/32", "web", "Scanner from the lab")
		add("192.0.2.2/32", "cli", "manual")
		add("192.0.2.3/32", "ids", "SSH scanner")
		e.Clock.Advance(24 * time.Hour)
		add("192.0.2.4/32", "ids", "brute force")
		list := func(o queue.ListOptions) []string {
			t.Helper()
			var out []string
			if err := e.Svc.ListBlocks(e.Ctx, o, func(b queue.Block) error {
				out = append(out, b.CIDR.Addr().String())
				return nil
			}); err != nil {
				t.Fatalf("ListBlocks(%+v): %v", o, err)
			}
			return out
		}
		eqStrings(t, "automated", list(queue.ListOptions{ExcludeSources: []string{"web", "cli"}, Descending: true}),
			[]string{"192.0.2.4", "192.0.2.3"})
		eqStrings(t, "why contains SCANNER", list(queue.ListOptions{WhyContains: "SCANNER"}),
			[]string{"192.0.2.1", "192.0.2.3"})
		eqStrings(t, "why contains, above the first id", list(queue.ListOptions{WhyContains: "scanner", MinID: first}),
			[]string{"192.0.2.3"})
		eqStrings(t, "why contains a % sign", list(queue.ListOptions{WhyContains: "%"}), nil)

		counts, err := e.Svc.AddedPerDay(e.Ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		day0 := time.Date(Start.Year(), Start.Month(), Start.Day(), 0, 0, 0, 0, time.UTC)
		want := []queue.DayCount{
			{Day: day0, Source: "cli", Count: 1}, {Day: day0, Source: "ids", Count: 1}, {Day: day0, Source: "web", Count: 1},
			{Day: day0.AddDate(0, 0, 1), Source: "ids", Count: 1},
		}
		if len(counts) != len(want) {
			t.Fatalf("AddedPerDay = %+v, want %+v", counts, want)
		}
		for i := range want {
			if !counts[i].Day.Equal(want[i].Day) || counts[i].Source != want[i].Source || counts[i].Count != want[i].Count {
				t.Errorf("AddedPerDay[%d] = %+v, want %+v", i, counts[i], want[i])
			}
		}
		// One day back is today alone.
		counts, err = e.Svc.AddedPerDay(e.Ctx, 1)
		if err != nil || len(counts) != 1 || counts[0].Source != "ids" {
			t.Errorf("AddedPerDay(1) = %+v, %v", counts, err)
		}
	})
}
