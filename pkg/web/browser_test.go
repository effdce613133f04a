package web_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bhrd/bhrd/pkg/auth"
)

// browserPath finds Debian's chromium; without it the browser tests skip
// loudly, or fail under BHRD_REQUIRE_BROWSER=1 (as in CI).
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BHRD_REQUIRE_BROWSER") == "1" {
		t.Fatal("no chromium on the PATH and BHRD_REQUIRE_BROWSER=1 (scripts/deps.sh test installs it)")
	}
	t.Skip("SKIPPED: no chromium on the PATH; the browser tests did not run (apt-get install chromium)")
	return ""
}

// newBrowser starts a headless chromium for the test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browserPath(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 900),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// The first call starts the browser, for as long as ctx lives: no
	// timeout on it (each later step has one).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// shots is where screenshots go: $BHRD_SCREENSHOTS, else a temp dir.
func shots(t *testing.T) string {
	if d := os.Getenv("BHRD_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// run runs browser steps, each group within 30 s.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs one browser step that reads something.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	buf := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func bodyText(t *testing.T, ctx context.Context) string {
	t.Helper()
	return value(t, ctx, "read the page", chromedp.Text(chromedp.CSS("body")))
}

func login(t *testing.T, ctx context.Context, base, user string) {
	t.Helper()
	run(t, ctx, "log in as "+user,
		chromedp.Navigate(base+"/bhr/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`form.card button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav form button.link`)),
	)
}

func TestBrowser(t *testing.T) {
	ctx := newBrowser(t)
	res := &fakeResolver{names: map[string]string{"10.20.30.40": "lab-host.example.org"}}
	e := newEnv(t, sqliteStore, envOpts{limited: true, local: []string{"10.0.0.0/8"}, resolver: res})
	base := e.srv.URL
	dir := shots(t)
	for i := 0; i < 12; i++ {
		e.block(fmt.Sprintf("198.51.100.%d/32", i+1), []string{"ids", "honeypot", "ssh-guard"}[i%3], "automated detection")
	}
	e.block("10.20.30.40/32", "ids", "infected lab host")
	e.block("2001:db8::/64", "cli", "abuse from a hosting range")

	// Log in, add a block.
	login(t, ctx, base, "u-user")
	screenshot(t, ctx, dir, "home")
	run(t, ctx, "stats", chromedp.Navigate(base+"/bhr/stats"), chromedp.WaitVisible(chromedp.CSS(`table.counts`)))
	before := value(t, ctx, "stats", chromedp.Text(chromedp.CSS(`table.counts`)))
	run(t, ctx, "add a block",
		chromedp.Navigate(base+"/bhr/add"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=cidr]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=cidr]`), "192.0.2.55"),
		chromedp.SendKeys(chromedp.CSS(`input[name=why]`), "port scan seen by staff"),
		chromedp.Click(chromedp.CSS(`input[name=duration][value="7d"]`)),
	)
	screenshot(t, ctx, dir, "add")
	run(t, ctx, "submit the block",
		chromedp.Click(chromedp.CSS(`form.card button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	)
	text := bodyText(t, ctx)
	for _, want := range []string{"Block 15 added.", "192.0.2.55/32", "port scan seen by staff", "u-user", "web", "7d"} {
		if !strings.Contains(text, want) {
			t.Errorf("query page after adding lacks %q:\n%s", want, text)
		}
	}
	screenshot(t, ctx, dir, "query")
	run(t, ctx, "stats", chromedp.Navigate(base+"/bhr/stats"), chromedp.WaitVisible(chromedp.CSS(`table.counts`)))
	if added := value(t, ctx, "stats", chromedp.Text(chromedp.CSS(`table.counts`))); !strings.Contains(added, "Expected\t15") || added == before {
		t.Errorf("stats after adding: %q (before: %q)", added, before)
	}

	// It is in the list (a manual block) and on the query page.
	run(t, ctx, "list", chromedp.Navigate(base+"/bhr/list"), chromedp.WaitVisible(chromedp.CSS(`h2`)))
	text = bodyText(t, ctx)
	if manual := between(text, "Manual blocks", "Blocks inside"); !strings.Contains(manual, "192.0.2.55/32") {
		t.Errorf("manual list lacks the block:\n%s", manual)
	}
	// Reverse names fill in the background: reload until seen.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(text, "lab-host.example.org") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		run(t, ctx, "reload list", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`h2`)))
		text = bodyText(t, ctx)
	}
	if !strings.Contains(text, "lab-host.example.org") {
		t.Error("the local list never showed the reverse name")
	}
	screenshot(t, ctx, dir, "list")

	// Unblock it with a reason, from the query page.
	run(t, ctx, "check and unblock",
		chromedp.Navigate(base+"/bhr/query?query=192.0.2.55"),
		chromedp.WaitVisible(chromedp.CSS(`input[type=checkbox][value="192.0.2.55/32"]`)),
		chromedp.Click(chromedp.CSS(`input[type=checkbox][value="192.0.2.55/32"]`)),
		chromedp.Click(chromedp.CSS(`main form[action="/bhr/unblock"] > button`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=why]`)),
	)
	screenshot(t, ctx, dir, "unblock")
	run(t, ctx, "confirm the unblock",
		chromedp.SendKeys(chromedp.CSS(`input[name=why]`), "scan was our own audit"),
		chromedp.Click(chromedp.CSS(`form.card button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	)
	run(t, ctx, "query after", chromedp.Navigate(base+"/bhr/query?query=192.0.2.55"), chromedp.WaitVisible(chromedp.CSS(`table.blocks`)))
	if text = bodyText(t, ctx); !strings.Contains(text, "unblocked by u-user: scan was our own audit") {
		t.Errorf("query after unblock:\n%s", text)
	}
	if l := e.lastAudit("unblock_now"); l["actor"] != "u-user" || l["cidr"] != "192.0.2.55/32" {
		t.Errorf("unblock_now line: %v", l)
	}

	// The stats changed: one more block seen, not expected any more.
	run(t, ctx, "stats", chromedp.Navigate(base+"/bhr/stats"), chromedp.WaitVisible(chromedp.CSS(`svg`)))
	after := value(t, ctx, "stats", chromedp.Text(chromedp.CSS(`table.counts`)))
	if !strings.Contains(after, "Expected\t14") {
		t.Errorf("stats after the unblock: %q", after)
	}
	if _, err := e.svc.BlockQueue(e.ctx, "edge-router-1", time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(40 * time.Second)
	run(t, ctx, "stats", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`svg`)))
	screenshot(t, ctx, dir, "stats")
	run(t, ctx, "enforcers", chromedp.Navigate(base+"/bhr/enforcers"), chromedp.WaitVisible(chromedp.CSS(`table`)))
	screenshot(t, ctx, dir, "enforcers")
	run(t, ctx, "whitelist", chromedp.Navigate(base+"/bhr/admin/whitelist"), chromedp.WaitVisible(chromedp.CSS(`table`)))

	// A form posted from another origin (same host, another port: the
	// cookie goes with it, SameSite=Lax allows that) is refused.
	evil := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id=f method=post action="%s/bhr/add"><input name=cidr value="192.0.2.99"><input name=why value=csrf><input name=duration value=1h><button id=go>go</button></form>`, base)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go evil.Serve(ln)
	t.Cleanup(func() { evil.Close() })
	run(t, ctx, "cross-origin form",
		chromedp.Navigate("http://"+ln.Addr().String()+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#go`)),
		chromedp.Click(chromedp.CSS(`#go`)),
		chromedp.WaitVisible(chromedp.CSS(`p.error`)),
	)
	if text = bodyText(t, ctx); !strings.Contains(text, "sent from another site") {
		t.Errorf("cross-origin post answered:\n%s", text)
	}
	if got := e.blocksWithin("192.0.2.99/32"); got != 0 {
		t.Errorf("the cross-origin form made %d blocks", got)
	}

	// Logout ends the session: the pages ask for a login again.
	run(t, ctx, "log out",
		chromedp.Navigate(base+"/bhr/stats"),
		chromedp.WaitVisible(chromedp.CSS(`nav form button.link`)),
		chromedp.Click(chromedp.CSS(`nav form button.link`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	screenshot(t, ctx, dir, "login")
	run(t, ctx, "stats after logout", chromedp.Navigate(base+"/bhr/stats"), chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)))
	loc := value(t, ctx, "location", chromedp.Location())
	if !strings.Contains(loc, "/bhr/login") {
		t.Errorf("after logout, stats went to %s", loc)
	}

	// The limited pages: no who, no why.
	run(t, ctx, "limited list", chromedp.Navigate(base+"/bhr/limited/list"), chromedp.WaitVisible(chromedp.CSS(`table`)))
	text = bodyText(t, ctx)
	if !strings.Contains(text, "198.51.100.1/32") || strings.Contains(text, "automated detection") || strings.Contains(text, "tool") {
		t.Errorf("limited list:\n%s", text)
	}
	screenshot(t, ctx, dir, "limited-list")
	run(t, ctx, "limited query", chromedp.Navigate(base+"/bhr/limited/query?query=2001:db8::/32"), chromedp.WaitVisible(chromedp.CSS(`table`)))
	if text = bodyText(t, ctx); !strings.Contains(text, "2001:db8::/64") || strings.Contains(text, "hosting range") {
		t.Errorf("limited query:\n%s", text)
	}

	// A read-only user sees no add or unblock controls.
	login(t, ctx, base, "u-"+auth.RoleReadOnly)
	for _, path := range []string{"/bhr/", "/bhr/list", "/bhr/query?query=198.51.100.0/24"} {
		run(t, ctx, "read-only "+path, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS(`main`)))
		n := value(t, ctx, "count controls", chromedp.Evaluate[int](`document.querySelectorAll('a[href="/bhr/add"], input[type=checkbox], button[type=submit]:not(.link)').length`))
		if path == "/bhr/query?query=198.51.100.0/24" {
			n-- // the query form's own button
		}
		if n != 0 {
			t.Errorf("read-only user sees %d controls on %s", n, path)
		}
	}
	// ...and a crafted POST from their session (same origin) is refused.
	// (The pages' CSP forbids fetch; a form built in the page is what a
	// user with the developer tools could send.)
	run(t, ctx, "crafted post",
		chromedp.Navigate(base+"/bhr/query"), chromedp.WaitVisible(chromedp.CSS(`main`)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[chromedp.Void](`(() => { const f = document.createElement("form");
				f.method = "post"; f.action = "/bhr/add";
				for (const [k, v] of [["cidr", "192.0.2.98"], ["why", "x"], ["duration", "1h"]]) {
					const i = document.createElement("input"); i.name = k; i.value = v; f.appendChild(i); }
				document.body.appendChild(f); f.submit(); })()`)(ctx, tg)
			return err
		}),
		chromedp.WaitVisible(chromedp.CSS(`p.error`)),
	)
	if text = bodyText(t, ctx); !strings.Contains(text, "Your account may not do this") {
		t.Errorf("crafted POST by read-only answered:\n%s", text)
	}
	if got := e.blocksWithin("192.0.2.98/32"); got != 0 {
		t.Errorf("the crafted post made %d blocks", got)
	}

	// A phone.
	run(t, ctx, "phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/bhr/query?query=198.51.100.0/24"), chromedp.WaitVisible(chromedp.CSS(`table`)))
	screenshot(t, ctx, dir, "query-phone")
}
