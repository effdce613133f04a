package web

import (
	"cmp"
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

func itoa(n int) string { return strconv.Itoa(n) }

// Durations offered on the add page, in BHR's duration syntax.
var durations = []struct{ Label, Value string }{
	{"5 minutes", "5m"}, {"1 hour", "1h"}, {"1 day", "1d"}, {"1 week", "7d"},
	{"1 month", "30d"}, {"3 months", "90d"}, {"1 year", "1y"}, {"indefinite", "0"},
}

// row is one block on a list page with what the user may do to it.
type row struct {
	queue.Block
	Entries   []queue.Entry
	Expected  bool
	Unblock   bool   // a checkbox is shown
	Name      string // reverse DNS, local list only
	Duration  string
	HideWho   bool
	LimitedAt bool
}

func blockDuration(b queue.Block) string {
	if b.Indefinite() {
		return "indefinite"
	}
	return humanDuration(b.UnblockAt.Sub(b.Added))
}

func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d%(24*time.Hour) == 0:
		return itoa(int(d/(24*time.Hour))) + "d"
	case d%time.Hour == 0:
		return itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return itoa(int(d/time.Minute)) + "m"
	}
	return d.Round(time.Second).String()
}

func (p *Pages) rows(ctx context.Context, blocks []queue.Block, u *auth.Principal, entries bool) ([]row, error) {
	now := p.svc.Now()
	out := make([]row, len(blocks))
	for i, b := range blocks {
		out[i] = row{Block: b, Expected: b.ExpectedAt(now), Duration: blockDuration(b)}
		out[i].Unblock = out[i].Expected && u.Can(auth.PermChangeBlock)
		if entries {
			err := p.svc.ListEntries(ctx, queue.EntryListOptions{BlockID: b.ID, Limit: 100}, func(e queue.Entry) error {
				out[i].Entries = append(out[i].Entries, e)
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (p *Pages) blocks(ctx context.Context, opts queue.ListOptions) ([]queue.Block, error) {
	var out []queue.Block
	err := p.svc.ListBlocks(ctx, opts, func(b queue.Block) error {
		out = append(out, b)
		return nil
	})
	return out, err
}

// home: links, and the limited section.
func (p *Pages) home(w http.ResponseWriter, r *http.Request) {
	if auth.FromContext(r.Context()) == nil && !p.limited {
		http.Redirect(w, r, "/bhr/login?next=/bhr/", http.StatusSeeOther)
		return
	}
	p.render(w, r, http.StatusOK, "home", "Black Hole Router", nil)
}

type addData struct {
	CIDR, Why, Duration string
	Custom              string
	SkipWhitelist       bool
	Extend              bool
	MaySkip             bool
	Durations           []struct{ Label, Value string }
	Errors              map[string]string
}

// add: the block form; the same rules and audit as api/block, with
// source "web".
func (p *Pages) add(w http.ResponseWriter, r *http.Request) {
	u, ok := p.need(w, r, auth.PermAddBlock)
	if !ok {
		return
	}
	d := addData{
		CIDR: r.FormValue("cidr"), Why: r.FormValue("why"), Duration: r.FormValue("duration"),
		Custom: r.FormValue("custom"), Durations: durations, MaySkip: u.Can(auth.PermSkipWhitelist),
		Extend: r.Method != http.MethodPost || r.PostFormValue("extend") != "",
	}
	if d.Duration == "" {
		d.Duration = "1d"
	}
	if r.Method != http.MethodPost {
		p.render(w, r, http.StatusOK, "add", "Add a block", d)
		return
	}
	d.SkipWhitelist = r.PostFormValue("skip_whitelist") != ""
	dur := d.Duration
	if dur == "custom" {
		dur = d.Custom
	}
	res, err := p.svc.Block(r.Context(), queue.BlockRequest{
		CIDR: d.CIDR, Who: u.Username, Source: "web", Why: d.Why, Duration: dur,
		SkipWhitelist: d.SkipWhitelist, Extend: d.Extend, MaySkipWhitelist: u.Can(auth.PermSkipWhitelist),
	})
	if err != nil {
		status, msg := p.errorStatus(err)
		if status >= 500 {
			p.failErr(w, r, err)
			return
		}
		d.Errors = fieldMessages(err)
		p.render(w, r, status, "add", "Add a block", d, msg)
		return
	}
	http.Redirect(w, r, "/bhr/query?query="+urlQueryEscape(res.Block.CIDR.String())+"&added="+strconv.FormatInt(res.Block.ID, 10), http.StatusSeeOther)
}

// fieldMessages maps each field of a refusal to its message.
func fieldMessages(err error) map[string]string {
	m := map[string]string{}
	var fes queue.FieldErrors
	var fe *queue.FieldError
	switch {
	case errors.As(err, &fes):
		for _, e := range fes {
			m[e.Field] = e.Message
		}
	case errors.As(err, &fe):
		m[fe.Field] = fe.Message
	}
	return m
}

type queryData struct {
	Query   string
	Kind    string // "", "cidr", "text"
	Prefix  string
	Rows    []row
	Next    template.URL // the next page, "" at the end
	Window  string       // for text: which ids were searched
	Added   int64
	Limited bool
}

// parseQuery tells an address or prefix from a text: anything that
// parses as one is one (so "fe80::1" or "abcd::/16" are addresses).
func parseQuery(q string) (netip.Prefix, bool) {
	q = strings.TrimSpace(q)
	if a, err := netip.ParseAddr(q); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	if pf, err := queue.ParseNetwork(q); err == nil {
		return pf, true
	}
	return netip.Prefix{}, false
}

func (p *Pages) query(w http.ResponseWriter, r *http.Request) {
	u, ok := p.need(w, r, auth.PermRead)
	if !ok {
		return
	}
	p.doQuery(w, r, u, false)
}

func (p *Pages) limitedQuery(w http.ResponseWriter, r *http.Request) {
	if !p.limited {
		p.fail(w, r, http.StatusNotFound, "The limited pages are not enabled here.")
		return
	}
	p.doQuery(w, r, nil, true)
}

func (p *Pages) doQuery(w http.ResponseWriter, r *http.Request, u *auth.Principal, limited bool) {
	page, title := "query", "Query"
	if limited {
		page, title = "limited_query", "Limited query"
	}
	q := strings.TrimSpace(r.FormValue("query"))
	d := queryData{Query: q, Limited: limited}
	d.Added, _ = strconv.ParseInt(r.FormValue("added"), 10, 64)
	if q == "" {
		p.render(w, r, http.StatusOK, page, title, d)
		return
	}
	after, _ := strconv.ParseInt(r.FormValue("after"), 10, 64)
	path := "/bhr/query"
	if limited {
		path = "/bhr/limited/query"
	}
	nextPage := func(after int64) template.URL {
		return template.URL(path + "?" + url.Values{"query": {q}, "after": {strconv.FormatInt(after, 10)}}.Encode())
	}
	var blocks []queue.Block
	var err error
	if pf, isNet := parseQuery(q); isNet {
		d.Kind, d.Prefix = "cidr", pf.String()
		blocks, err = p.blocks(r.Context(), queue.ListOptions{Within: pf, Descending: true, AfterID: after, Limit: pageSize + 1})
	} else if limited {
		p.render(w, r, http.StatusBadRequest, page, title, d, "Give an address or a prefix.")
		return
	} else {
		// A text is matched in why, newest first, whyWindow ids a page:
		// the time of a page is bounded whatever the table's size.
		d.Kind = "text"
		top := after
		if top <= 0 {
			last, lerr := p.blocks(r.Context(), queue.ListOptions{Descending: true, Limit: 1})
			if lerr != nil {
				p.failErr(w, r, lerr)
				return
			}
			if len(last) == 0 {
				p.render(w, r, http.StatusOK, page, title, d)
				return
			}
			top = last[0].ID + 1
		}
		floor := max(top-whyWindow-1, 0)
		blocks, err = p.blocks(r.Context(), queue.ListOptions{WhyContains: q, Descending: true, AfterID: top, MinID: floor, Limit: pageSize + 1})
		if err == nil {
			lowest := floor + 1
			if len(blocks) > pageSize {
				lowest = blocks[pageSize-1].ID
			}
			d.Window = "blocks " + strconv.FormatInt(lowest, 10) + " to " + strconv.FormatInt(top-1, 10)
			if len(blocks) <= pageSize && floor > 0 {
				d.Next = nextPage(floor + 1)
			}
		}
	}
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	if len(blocks) > pageSize {
		blocks = blocks[:pageSize]
		d.Next = nextPage(blocks[len(blocks)-1].ID)
	}
	d.Rows, err = p.rows(r.Context(), blocks, u, !limited)
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, page, title, d)
}

type unblockData struct {
	CIDRs []string
	Why   string
	Done  []queue.Block
	Back  string
}

// unblock: GET confirms the checked rows, POST unblocks them with a
// required why (the unblock reaches every ident's unblock queue).
func (p *Pages) unblock(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.need(w, r, auth.PermChangeBlock); !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		p.fail(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	var cidrs []string
	for _, c := range r.Form["cidr"] {
		if c = strings.TrimSpace(c); c != "" && !slices.Contains(cidrs, c) {
			cidrs = append(cidrs, c)
		}
	}
	d := unblockData{CIDRs: cidrs, Why: strings.TrimSpace(r.FormValue("why"))}
	if len(cidrs) == 0 {
		p.render(w, r, http.StatusBadRequest, "unblock", "Unblock", d, "Choose at least one block to unblock.")
		return
	}
	if r.Method != http.MethodPost {
		p.render(w, r, http.StatusOK, "unblock", "Unblock", d)
		return
	}
	if d.Why == "" {
		p.render(w, r, http.StatusBadRequest, "unblock", "Unblock", d, "Say why these blocks are removed.")
		return
	}
	done, err := p.svc.UnblockNowMulti(r.Context(), cidrs, d.Why)
	if err != nil {
		status, msg := p.errorStatus(err)
		if status >= 500 {
			p.failErr(w, r, err)
			return
		}
		p.render(w, r, status, "unblock", "Unblock", d, msg)
		return
	}
	d.Done = done
	p.render(w, r, http.StatusOK, "unblock", "Unblocked", d, "", "Unblocked; every enforcer will remove them.")
}

type sourceCount struct {
	Source string
	Count  int64
}

type statsData struct {
	Stats   queue.Stats
	Sources []sourceCount
	Daily   chart
	Lag     chart
	DailyAt time.Time
}

func (p *Pages) stats(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.need(w, r, auth.PermRead); !ok {
		return
	}
	st, err := p.svc.Stats(r.Context())
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	d := statsData{Stats: st}
	for s, n := range st.Sources {
		d.Sources = append(d.Sources, sourceCount{s, n})
	}
	slices.SortFunc(d.Sources, func(a, b sourceCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Source, b.Source))
	})
	counts, at := p.daily.get(r.Context())
	d.DailyAt = at
	d.Daily = dailyChart(counts, p.svc.Now(), 30)
	idents, err := p.svc.ListIdents(r.Context())
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	d.Lag = lagChart(idents, p.svc.Now())
	p.render(w, r, http.StatusOK, "stats", "Stats", d)
}

type listData struct {
	Manual    []row
	Local     []row
	Automated []row
	LocalNets []netip.Prefix
	Source    string
	Rows      []row
	Next      template.URL
	Limited   bool
}

// list: manual blocks (sources web and cli), blocks inside the local
// networks with their names, and the most recent automated blocks.
func (p *Pages) list(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		// The bulk unblock form posts here without a why: confirm first.
		if _, ok := p.need(w, r, auth.PermChangeBlock); !ok {
			return
		}
		if err := r.ParseForm(); err != nil {
			p.fail(w, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		q := "?"
		for _, c := range r.PostForm["cidr"] {
			q += "cidr=" + urlQueryEscape(c) + "&"
		}
		http.Redirect(w, r, "/bhr/unblock"+strings.TrimSuffix(q, "&"), http.StatusSeeOther)
		return
	}
	u, ok := p.need(w, r, auth.PermRead)
	if !ok {
		return
	}
	d, err := p.listPage(r.Context(), u)
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "list", "Lists", d)
}

func (p *Pages) listPage(ctx context.Context, u *auth.Principal) (listData, error) {
	d := listData{LocalNets: p.local, Limited: u == nil}
	var manual []queue.Block
	for _, src := range []string{"web", "cli"} {
		bs, err := p.blocks(ctx, queue.ListOptions{Filter: queue.FilterExpected, Source: src, Descending: true, Limit: pageSize})
		if err != nil {
			return d, err
		}
		manual = append(manual, bs...)
	}
	slices.SortFunc(manual, func(a, b queue.Block) int { return cmp.Compare(b.ID, a.ID) })
	manual = manual[:min(len(manual), pageSize)]
	var local []queue.Block
	for _, n := range p.local {
		bs, err := p.blocks(ctx, queue.ListOptions{Filter: queue.FilterExpected, Within: n, Descending: true, Limit: pageSize})
		if err != nil {
			return d, err
		}
		local = append(local, bs...)
	}
	slices.SortFunc(local, func(a, b queue.Block) int { return cmp.Compare(b.ID, a.ID) })
	local = local[:min(len(local), pageSize)]
	auto, err := p.blocks(ctx, queue.ListOptions{Filter: queue.FilterExpected, ExcludeSources: []string{"web", "cli"}, Descending: true, Limit: pageSize})
	if err != nil {
		return d, err
	}
	if d.Manual, err = p.rows(ctx, manual, u, false); err != nil {
		return d, err
	}
	if d.Local, err = p.rows(ctx, local, u, false); err != nil {
		return d, err
	}
	if d.Automated, err = p.rows(ctx, auto, u, false); err != nil {
		return d, err
	}
	var addrs []netip.Addr
	for _, rw := range d.Local {
		if rw.CIDR.IsSingleIP() {
			addrs = append(addrs, rw.CIDR.Addr())
		}
	}
	names := p.rdns.names(addrs)
	for i := range d.Local {
		d.Local[i].Name = names[d.Local[i].CIDR.Addr()]
	}
	return d, nil
}

func (p *Pages) limitedList(w http.ResponseWriter, r *http.Request) {
	if !p.limited {
		p.fail(w, r, http.StatusNotFound, "The limited pages are not enabled here.")
		return
	}
	d, err := p.listPage(r.Context(), nil)
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "limited_list", "Limited list", d)
}

// listSource: one source's most recent blocks, in any state.
func (p *Pages) listSource(w http.ResponseWriter, r *http.Request) {
	u, ok := p.need(w, r, auth.PermRead)
	if !ok {
		return
	}
	src := r.PathValue("source")
	after, _ := strconv.ParseInt(r.FormValue("after"), 10, 64)
	bs, err := p.blocks(r.Context(), queue.ListOptions{Source: src, Descending: true, AfterID: after, Limit: pageSize + 1})
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	d := listData{Source: src}
	if len(bs) > pageSize {
		bs = bs[:pageSize]
		d.Next = template.URL("/bhr/list/source/" + url.PathEscape(src) + "?after=" + strconv.FormatInt(bs[len(bs)-1].ID, 10))
	}
	if d.Rows, err = p.rows(r.Context(), bs, u, false); err != nil {
		p.failErr(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "list_source", "Source "+src, d)
}

type identRow struct {
	queue.IdentInfo
	Lag   time.Duration
	Peers []Peer
}

type enforcersData struct {
	Idents   []identRow
	PeersErr string
	Lag      chart
}

func (p *Pages) enforcers(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.need(w, r, auth.PermRead); !ok {
		return
	}
	idents, err := p.svc.ListIdents(r.Context())
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	var d enforcersData
	var peers map[string][]Peer
	if p.peers != nil {
		if peers, err = p.peers(r.Context()); err != nil {
			d.PeersErr = err.Error()
		}
	}
	now := p.svc.Now()
	for _, id := range idents {
		ir := identRow{IdentInfo: id, Peers: peers[id.Name]}
		if !id.OldestQueued.IsZero() {
			ir.Lag = now.Sub(id.OldestQueued).Round(time.Second)
		}
		d.Idents = append(d.Idents, ir)
	}
	d.Lag = lagChart(idents, now)
	p.render(w, r, http.StatusOK, "enforcers", "Enforcers", d)
}

type listAdminData struct {
	Kind      string // "whitelist" or "blacklist"
	Whitelist []queue.WhitelistEntry
	Blacklist []queue.SourceBlacklistEntry
	Value     string
	Why       string
	CanChange bool
}

func (p *Pages) whitelist(w http.ResponseWriter, r *http.Request) {
	p.adminList(w, r, "whitelist", auth.PermChangeWhitelist)
}

func (p *Pages) blacklist(w http.ResponseWriter, r *http.Request) {
	p.adminList(w, r, "blacklist", auth.PermChangeSourceBlacklist)
}

// adminList lists, adds to and deletes from the whitelist or the source
// blacklist: readers see them, admins change them.
func (p *Pages) adminList(w http.ResponseWriter, r *http.Request, kind string, perm auth.Permission) {
	want := auth.PermRead
	if r.Method == http.MethodPost {
		want = perm
	}
	u, ok := p.need(w, r, want)
	if !ok {
		return
	}
	d := listAdminData{Kind: kind, CanChange: u.Can(perm)}
	title := "Whitelist"
	if kind == "blacklist" {
		title = "Source blacklist"
	}
	var msg, notice string
	status := http.StatusOK
	if r.Method == http.MethodPost {
		var err error
		switch r.PostFormValue("action") {
		case "add":
			d.Value, d.Why = r.PostFormValue("value"), r.PostFormValue("why")
			if kind == "whitelist" {
				_, err = p.svc.AddWhitelist(r.Context(), d.Value, d.Why)
			} else {
				_, err = p.svc.AddSourceBlacklist(r.Context(), d.Value, d.Why)
			}
			if err == nil {
				notice, d.Value, d.Why = "Added.", "", ""
			}
		case "delete":
			id, perr := strconv.ParseInt(r.PostFormValue("id"), 10, 64)
			if perr != nil {
				err = &queue.FieldError{Field: "id", Message: "not an id", Err: queue.ErrInvalidField}
			} else if kind == "whitelist" {
				err = p.svc.DeleteWhitelist(r.Context(), id)
			} else {
				err = p.svc.DeleteSourceBlacklist(r.Context(), id)
			}
			if err == nil {
				notice = "Deleted."
			}
		default:
			err = &queue.FieldError{Field: "action", Message: "must be add or delete", Err: queue.ErrInvalidField}
		}
		if err != nil {
			status, msg = p.errorStatus(err)
			if status >= 500 {
				p.failErr(w, r, err)
				return
			}
		}
	}
	var err error
	if kind == "whitelist" {
		d.Whitelist, err = p.svc.ListWhitelist(r.Context())
	} else {
		d.Blacklist, err = p.svc.ListSourceBlacklist(r.Context())
	}
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	p.render(w, r, status, "admin_list", title, d, msg, notice)
}
