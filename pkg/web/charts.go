package web

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// The daily counts are a GROUP BY over a month of blocks: they are kept
// for twenty times what counting them cost (5 s to 5 min) and refreshed
// in the background, so that the stats page never waits for them but
// the first time, and then at most dailyWait.
const (
	dailyMinFresh = 5 * time.Second
	dailyMaxFresh = 5 * time.Minute
	dailyWait     = 30 * time.Millisecond
	dailyDays     = 30
)

type dailyCache struct {
	svc *queue.Service

	mu      sync.Mutex
	counts  []queue.DayCount
	at      time.Time     // by the Service's clock, for the page
	expires time.Time     // by the wall clock
	running chan struct{} // closed when the refresh in flight ends
}

// get returns the last counts and when they were taken (zero: none yet).
func (c *dailyCache) get(ctx context.Context) ([]queue.DayCount, time.Time) {
	c.mu.Lock()
	if c.running == nil && !time.Now().Before(c.expires) {
		done := make(chan struct{})
		c.running = done
		go c.refresh(done)
	}
	counts, at, running := c.counts, c.at, c.running
	c.mu.Unlock()
	if at.IsZero() && running != nil {
		t := time.NewTimer(dailyWait)
		defer t.Stop()
		select {
		case <-running:
		case <-t.C:
		case <-ctx.Done():
		}
		c.mu.Lock()
		counts, at = c.counts, c.at
		c.mu.Unlock()
	}
	return counts, at
}

func (c *dailyCache) refresh(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	at := c.svc.Now()
	counts, err := c.svc.AddedPerDay(ctx, dailyDays)
	cost := time.Since(start)
	c.mu.Lock()
	if err == nil {
		c.counts, c.at = counts, at
		c.expires = time.Now().Add(min(max(20*cost, dailyMinFresh), dailyMaxFresh))
	} else {
		c.expires = time.Now().Add(dailyMinFresh) // try again soon, not on every load
	}
	c.running = nil
	c.mu.Unlock()
	close(done)
}

// chart is an inline SVG and the table that says the same in words.
type chart struct {
	SVG   template.HTML
	Empty bool
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f"}

func esc(s string) string { return template.HTMLEscapeString(s) }

// dailyChart draws blocks added per day by source as stacked bars: the
// six biggest sources by colour, the rest as "other".
func dailyChart(counts []queue.DayCount, now time.Time, days int) chart {
	if len(counts) == 0 {
		return chart{Empty: true}
	}
	now = now.UTC()
	first := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, 1-days)
	totals := map[string]int64{}
	for _, c := range counts {
		totals[c.Source] += c.Count
	}
	var sources []string
	for s := range totals {
		sources = append(sources, s)
	}
	slices.SortFunc(sources, func(a, b string) int { return cmp.Or(cmp.Compare(totals[b], totals[a]), cmp.Compare(a, b)) })
	shown := sources
	if len(shown) > len(palette)-1 {
		shown = shown[:len(palette)-1]
	}
	colour := map[string]string{}
	for i, s := range shown {
		colour[s] = palette[i]
	}
	key := func(s string) string {
		if _, ok := colour[s]; ok {
			return s
		}
		return "other"
	}
	perDay := make([]map[string]int64, days)
	var peak int64
	for _, c := range counts {
		i := int(c.Day.Sub(first) / (24 * time.Hour))
		if i < 0 || i >= days {
			continue
		}
		if perDay[i] == nil {
			perDay[i] = map[string]int64{}
		}
		perDay[i][key(c.Source)] += c.Count
	}
	for _, m := range perDay {
		var t int64
		for _, n := range m {
			t += n
		}
		peak = max(peak, t)
	}
	if peak == 0 {
		return chart{Empty: true}
	}
	order := append(slices.Clone(shown), "other")
	if len(sources) > len(shown) {
		colour["other"] = palette[len(palette)-1]
	}
	const w, h, left, bottom, top = 640, 220, 48, 28, 10
	bw := float64(w-left-4) / float64(days)
	plot := float64(h - bottom - top)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-label="Blocks added per day, last %d days, by source" class="chart">`, w, h+18*((len(order)+3)/4), days)
	fmt.Fprintf(&b, `<text x="4" y="%d" class="axis">%d</text><text x="4" y="%d" class="axis">0</text>`, top+8, peak, h-bottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="grid"/>`, left, h-bottom, w-4, h-bottom)
	for i, m := range perDay {
		x := float64(left) + float64(i)*bw
		y := float64(h - bottom)
		for _, s := range order {
			n := m[s]
			if n == 0 {
				continue
			}
			bh := plot * float64(n) / float64(peak)
			y -= bh
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %d</title></rect>`,
				x+1, y, bw-2, bh, colour[s], first.AddDate(0, 0, i).Format("Jan 2"), esc(s), n)
		}
		if (days-1-i)%7 == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="axis">%s</text>`, x, h-bottom+16, first.AddDate(0, 0, i).Format("Jan 2"))
		}
	}
	n := 0
	for _, s := range order {
		c, ok := colour[s]
		if !ok {
			continue
		}
		x, y := 8+(n%4)*158, h+4+18*(n/4)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" class="legend">%s (%d)</text>`,
			x, y, c, x+16, y+11, esc(s), legendTotal(totals, s, shown))
		n++
	}
	b.WriteString(`</svg>`)
	return chart{SVG: template.HTML(b.String())}
}

func legendTotal(totals map[string]int64, s string, shown []string) int64 {
	if s != "other" {
		return totals[s]
	}
	var t int64
	for k, n := range totals {
		if !slices.Contains(shown, k) {
			t += n
		}
	}
	return t
}

// lagChart draws each ident's queue lag (age of the oldest queued
// block) as a horizontal bar, with its depth.
func lagChart(idents []queue.IdentInfo, now time.Time) chart {
	if len(idents) == 0 {
		return chart{Empty: true}
	}
	lag := func(i queue.IdentInfo) time.Duration {
		if i.OldestQueued.IsZero() {
			return 0
		}
		return max(now.Sub(i.OldestQueued), 0)
	}
	var peak time.Duration
	for _, i := range idents {
		peak = max(peak, lag(i))
	}
	const w, row, left = 640, 22, 170
	h := row*len(idents) + 8
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" aria-label="Queue lag per ident" class="chart">`, w, h)
	for n, i := range idents {
		y := 4 + n*row
		l := lag(i)
		bar := 0.0
		if peak > 0 {
			bar = float64(w-left-150) * float64(l) / float64(peak)
		}
		fill := "#2ca02c"
		switch {
		case l > 5*time.Minute:
			fill = "#d62728"
		case l > 10*time.Second:
			fill = "#ff7f0e"
		}
		name := i.Name
		if len(name) > 24 {
			name = name[:23] + "…"
		}
		fmt.Fprintf(&b, `<text x="4" y="%d" class="legend">%s</text>`, y+15, esc(name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="16" fill="%s"><title>%s: %s behind, %d queued</title></rect>`,
			left, y+2, max(bar, 1), fill, esc(i.Name), l.Round(time.Second), i.Queued)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="legend">%s, %d queued</text>`, float64(left)+max(bar, 1)+6, y+15, l.Round(time.Second), i.Queued)
	}
	b.WriteString(`</svg>`)
	return chart{SVG: template.HTML(b.String())}
}
