package queue

import "testing"

func TestPageWindow(t *testing.T) {
	for _, c := range []struct {
		name                 string
		opts                 ListOptions
		newest, window       int64
		ok                   bool
		recentMin, olderFrom int64
	}{
		{"from the newest", ListOptions{Descending: true, Limit: 50}, 1000, 100, true, 900, 901},
		{"below a cursor", ListOptions{Descending: true, Limit: 50, AfterID: 500}, 1000, 100, true, 399, 400},
		{"window reaches the first id", ListOptions{Descending: true, Limit: 50}, 80, 100, false, 0, 0},
		{"window reaches MinID", ListOptions{Descending: true, Limit: 50, MinID: 950}, 1000, 100, false, 0, 0},
		{"oldest first", ListOptions{Limit: 50}, 1000, 100, false, 0, 0},
	} {
		recent, older, ok := c.opts.Window(c.newest, c.window)
		if ok != c.ok {
			t.Errorf("%s: ok %v", c.name, ok)
			continue
		}
		if !ok {
			continue
		}
		if recent.MinID != c.recentMin || older.AfterID != c.olderFrom || recent.AfterID != c.opts.AfterID || older.MinID != c.opts.MinID {
			t.Errorf("%s: recent %+v older %+v", c.name, recent, older)
		}
	}
}

func TestSmallestProbe(t *testing.T) {
	drivers := []string{"range", "expected", "source"}
	if got := SmallestProbe(drivers, []int64{PageProbe, 12, 40}, "walk"); got != "expected" {
		t.Errorf("got %s, want the smallest set", got)
	}
	if got := SmallestProbe(drivers, []int64{PageProbe, PageProbe, PageProbe}, "walk"); got != "walk" {
		t.Errorf("got %s, want the walk when every set is large", got)
	}
	if got := SmallestProbe(drivers, []int64{0, 0, 3}, "walk"); got != "range" {
		t.Errorf("got %s, want the first of the smallest", got)
	}
}
