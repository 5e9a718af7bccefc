package interop

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/store"
)

// consoleToken is the operator credential the console test starts with.
const consoleToken = "browser-test-operator-token"

// untilJS defines until(f) in an expression: a promise of f()'s first
// truthy value, checked again whenever the page's DOM changes (the page's
// only signal); the test's context bounds the wait.
const untilJS = `const until = (f) => new Promise((resolve) => {
  const check = () => { const v = f(); if (v) { obs.disconnect(); resolve(v); return true; } return false; };
  const obs = new MutationObserver(check);
  if (!check()) obs.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
});
const $ = (id) => document.getElementById(id);
`

// do evaluates body (statements ending in a return) with until and $.
func (p *Page) do(ctx context.Context, body string, result any) {
	p.t.Helper()
	p.eval(ctx, "(async () => {\n"+untilJS+body+"\n})()", result)
}

// screenshotTo saves the page, full length, as dir/name.png.
func (p *Page) screenshotTo(ctx context.Context, dir, name string) {
	p.t.Helper()
	path, err := filepath.Abs(filepath.Join(dir, name+".png"))
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.screenshot(ctx, path); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", path)
}

// TestBrowserConsole drives the operator console in Chromium as an
// operator would: log in, watch the overview's messages and deliveries move, tail a channel and see a
// message sent from the console's own form, look the channel up, and
// revoke a token, which REST then refuses. It saves a screenshot of each
// page into $PUSHPULL_CONSOLE_SCREENSHOTS (docs/ regenerates
// docs/console-*.png), else into a temporary directory.
func TestBrowserConsole(t *testing.T) {
	b := startBrowser(t)
	ctx := testContext(t)
	shots := os.Getenv("PUSHPULL_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	f := newRESTFixture(t, "4", "--console-token", consoleToken)
	p := b.open(t, ctx, "console", f.srv.internal+"/console/")
	ch := newID(t)

	// Log in through the form.
	var state string
	p.fill(ctx, "#login-token", consoleToken)
	p.press(ctx, "#login-token", "Enter")
	p.waitVisible(ctx, "#logout")
	if state = p.text(ctx, "#session-state"); state != "Operator" {
		t.Fatalf("after logging in the page says %q", state)
	}

	// A long-polling client shows in the connection figures; it polls
	// again after each answer, as clients do, so it stays counted.
	pollCtx, stopPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	pollCh := newID(t)
	pollURL := f.srv.base + "/sub/?CHANNEL_ID=" + url.QueryEscape(sign(signatureKey, pollCh))
	go func() {
		defer close(pollDone)
		for pollCtx.Err() == nil {
			req, _ := http.NewRequestWithContext(pollCtx, http.MethodGet, pollURL, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
		}
	}()
	defer func() { stopPoll(); <-pollDone }()
	p.do(ctx, `return await until(() => $('m-longpolling').textContent === '1' && $('m-channels').textContent === '1');`, nil)

	// The overview counts the messages the node fans out, and the
	// deliveries to subscribers (the second message reaches the poller).
	readFigure := func(id string) (string, int) {
		t.Helper()
		var s string
		p.do(ctx, `return await until(() => { const t = $('`+id+`').textContent; return /^[0-9,]+$/.test(t) && t; });`, &s)
		n, _ := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
		return s, n
	}
	movedFrom := func(id, before string) int {
		t.Helper()
		var s string
		p.do(ctx, `return await until(() => { const t = $('`+id+`').textContent; return /^[0-9,]+$/.test(t) && t !== `+strconv.Quote(before)+` && t; });`, &s)
		n, _ := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
		return n
	}
	msgBefore, nb := readFigure("m-messages")
	delivBefore, db := readFigure("m-deliveries")
	f.srv.publish(t, body("im", "message", `{"n":1}`), ch)
	f.srv.publish(t, body("im", "message", `{"n":2}`), ch, pollCh)
	if na := movedFrom("m-messages", msgBefore); na < nb+1 {
		t.Fatalf("messages fanned out: %d before the publishes, %d after", nb, na)
	}
	if da := movedFrom("m-deliveries", delivBefore); da < db+1 {
		t.Fatalf("deliveries: %d before the publishes, %d after", db, da)
	}
	// The per-second charts show them once the sampler has seen them.
	p.do(ctx, `return await until(() => Number($('chart-messages').dataset.max) > 0 && Number($('chart-deliveries').dataset.max) > 0);`, nil)
	p.screenshotTo(ctx, shots, "console-overview")
	stopPoll()

	// Tail the channel, then send to it from the Send page.
	p.click(ctx, `nav a[href="#tail"]`)
	p.fill(ctx, "#tail-id", ch)
	p.click(ctx, "#tail-start")
	p.do(ctx, `return await until(() => $('tail-status').dataset.ready === '1');`, nil)
	p.click(ctx, `nav a[href="#send"]`)
	p.fill(ctx, "#send-channels", ch)
	p.fill(ctx, "#send-command", "fromConsole")
	p.fill(ctx, "#send-params", `{"text": "sent from the console form", "n": 3}`)
	p.click(ctx, "#send-submit")
	var sent string
	p.do(ctx, `return await until(() => { const t = $('send-result').textContent; return t !== '' && t; });`, &sent)
	if !strings.HasPrefix(sent, "Sent: mid ") {
		t.Fatalf("send: %q", sent)
	}
	p.screenshotTo(ctx, shots, "console-send")
	var tailed string
	p.click(ctx, `nav a[href="#tail"]`)
	p.do(ctx, `const li = await until(() => [...$('tail-list').children].find((li) => li.textContent.includes('fromConsole')));
return li.textContent;`, &tailed)
	if mid := strings.Fields(sent)[2]; !strings.Contains(tailed, mid) || !strings.Contains(tailed, "sent from the console form") {
		t.Fatalf("the tail shows %q, want the message %q", tailed, sent)
	}
	// The command filter hides what does not match, and shows it again.
	count := func() int {
		var n int
		p.eval(ctx, `document.getElementById('tail-list').children.length`, &n)
		return n
	}
	p.fill(ctx, "#tail-command", "none-such")
	hidden := count()
	p.fill(ctx, "#tail-command", "fromConsole")
	if shown := count(); hidden != 0 || shown != 1 {
		t.Fatalf("filtered tail shows %d messages for another command, %d for its own; want 0 and 1", hidden, shown)
	}
	p.screenshotTo(ctx, shots, "console-tail")

	// The channel's history, newest first: the console's message, then the
	// two published before.
	var mids []string
	p.click(ctx, `nav a[href="#channels"]`)
	p.fill(ctx, "#lookup-id", ch)
	p.press(ctx, "#lookup-id", "Enter")
	p.waitVisible(ctx, "#lookup-history")
	p.eval(ctx, `[...document.querySelectorAll('#lookup-history .head .mono')].map((e) => e.textContent)`, &mids)
	if len(mids) != 3 || !strings.Contains(sent, mids[0]) || !(mids[1] > mids[2]) {
		t.Fatalf("history mids %v, want the sent message's first, newest first", mids)
	}
	p.screenshotTo(ctx, shots, "console-channels")

	// Revoke user 1's token on the Registry page; REST refuses it after.
	configGet := func() (int, map[string]any) {
		return postJSON(t, f.srv.base+"/rest/pull.application.config.get", url.Values{"auth": {f.token}, "CACHE": {"N"}})
	}
	if code, body := configGet(); code != 200 {
		t.Fatalf("before revoke: %d %v", code, body)
	}
	id := store.HashSecret(f.token)
	p.click(ctx, `nav a[href="#registry"]`)
	// The first press asks, the second (from the keyboard) revokes.
	p.click(ctx, `button[data-token="`+id+`"]:not([disabled])`)
	if got := p.text(ctx, `button[data-token="`+id+`"]`); got != "Confirm revoke" {
		t.Fatalf("after one press the button says %q", got)
	}
	if code, _ := configGet(); code != 200 {
		t.Fatal("one press revoked the token")
	}
	p.press(ctx, `button[data-token="`+id+`"]`, "Enter")
	p.do(ctx, `return await until(() => { const c = document.querySelector('[data-token-state="`+id+`"]'); return c && c.textContent === 'revoked'; });`, nil)
	if code, body := configGet(); code != 401 || body["error"] != "invalid_token" {
		t.Fatalf("after revoking in the console, REST answers %d %v", code, body)
	}
	p.screenshotTo(ctx, shots, "console-registry")

	// Readable on a phone: the overview in a phone-sized page.
	phone := b.openSized(t, ctx, "phone", f.srv.internal+"/console/", 390, 844)
	phone.do(ctx, `return await until(() => /^[0-9,]+$/.test($('m-messages').textContent));`, nil)
	phone.screenshotTo(ctx, shots, "console-phone")
}

// TestBrowserConsoleTenants: a shared-mode server's Registry page lists a
// registered portal (never its key) and removes it from the keyboard; the
// portal's held long poll is answered at once and its next subscribe is
// refused. The screenshot is docs/console-tenants.png.
func TestBrowserConsoleTenants(t *testing.T) {
	b := startBrowser(t)
	ctx := testContext(t)
	shots := os.Getenv("PUSHPULL_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	srv := startServer(t, "--mode", "shared", "--tenant-verify", "open", "--console-token", consoleToken)
	const clientID = "0123456789abcdef0123456789abcdef"
	key := registerPortal(t, srv.base, clientID)
	registerPortal(t, srv.base, "fedcba9876543210fedcba9876543210")

	// The portal's client waits in a long poll.
	pollURL := srv.base + "/sub/?CHANNEL_ID=" + url.QueryEscape(sign(key, newID(t))) + "&clientId=" + clientID
	polled := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pollURL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			polled <- 0
			return
		}
		resp.Body.Close()
		polled <- resp.StatusCode
	}()

	p := b.open(t, ctx, "console-tenants", srv.internal+"/console/#registry")
	p.fill(ctx, "#login-token", consoleToken)
	p.press(ctx, "#login-token", "Enter")
	p.waitVisible(ctx, "#logout")
	sel := `button[data-tenant^="` + clientID + ` "]`
	p.do(ctx, `return await until(() => { const b = document.querySelector('`+sel+`'); return b && !b.disabled; });`, nil)
	var page string
	p.eval(ctx, `document.getElementById('registry').textContent`, &page)
	if !strings.Contains(page, clientID) || !strings.Contains(page, "Tenants (2)") || strings.Contains(page, key) {
		t.Fatalf("the registry page shows %q; want both tenants and no key", page)
	}
	// The long poll is held until the tenant goes: nothing has answered it.
	select {
	case code := <-polled:
		t.Fatalf("the portal's long poll ended before the removal: %d", code)
	default:
	}
	p.screenshotTo(ctx, shots, "console-tenants")

	p.click(ctx, sel)
	if got := p.text(ctx, sel); got != "Confirm remove" {
		t.Fatalf("after one press the button says %q", got)
	}
	p.press(ctx, sel, "Enter")
	p.do(ctx, `return await until(() => !document.querySelector('`+sel+`') && document.querySelector('button.remove-tenant'));`, nil)
	select {
	case code := <-polled:
		if code != http.StatusBadRequest {
			t.Fatalf("the removed portal's held long poll was answered %d, want 400 (4036)", code)
		}
	case <-ctx.Done():
		t.Fatal("the removed portal's long poll was not answered")
	}
	resp, err := http.Get(pollURL)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(string(b2), "4036:") {
		t.Fatalf("the removed portal subscribes again: %d %q, want 400 4036", resp.StatusCode, b2)
	}
}
