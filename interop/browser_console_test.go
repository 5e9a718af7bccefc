package interop

import (
	"context"
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
	if _, err := p.b.call(ctx, map[string]any{"cmd": "screenshot", "page": p.name, "path": path}); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", path)
}

func (p *Page) viewport(ctx context.Context, width, height int) {
	p.t.Helper()
	if _, err := p.b.call(ctx, map[string]any{"cmd": "viewport", "page": p.name, "width": width, "height": height}); err != nil {
		p.t.Fatal(err)
	}
}

// TestBrowserConsole drives the operator console in Chromium as an
// operator would: log in, watch the overview move, tail a channel and see a
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
	p.do(ctx, `$('login-token').value = `+strconv.Quote(consoleToken)+`;
$('login').requestSubmit();
await until(() => !$('logout').hidden);
return $('session-state').textContent;`, &state)
	if state != "Operator" {
		t.Fatalf("after logging in the page says %q", state)
	}

	// A long poll held open shows in the connection figures.
	pollCtx, stopPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	pollURL := f.srv.base + "/sub/?CHANNEL_ID=" + url.QueryEscape(sign(signatureKey, newID(t)))
	go func() {
		defer close(pollDone)
		req, _ := http.NewRequestWithContext(pollCtx, http.MethodGet, pollURL, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	defer func() { stopPoll(); <-pollDone }()
	p.do(ctx, `return await until(() => $('m-longpolling').textContent === '1' && $('m-channels').textContent === '1');`, nil)

	// The overview counts the messages the node fans out.
	readMessages := `return await until(() => { const t = $('m-messages').textContent; return /^[0-9,]+$/.test(t) && t; });`
	var before string
	p.do(ctx, readMessages, &before)
	f.srv.publish(t, body("im", "message", `{"n":1}`), ch)
	f.srv.publish(t, body("im", "message", `{"n":2}`), ch)
	var after string
	p.do(ctx, `return await until(() => { const t = $('m-messages').textContent; return /^[0-9,]+$/.test(t) && t !== `+strconv.Quote(before)+` && t; });`, &after)
	nb, _ := strconv.Atoi(strings.ReplaceAll(before, ",", ""))
	na, _ := strconv.Atoi(strings.ReplaceAll(after, ",", ""))
	if na < nb+1 {
		t.Fatalf("messages fanned out: %s before the publishes, %s after", before, after)
	}
	// The per-second chart shows the publishes once the sampler has seen them.
	p.do(ctx, `return await until(() => Number($('chart-messages').dataset.max) > 0);`, nil)
	p.screenshotTo(ctx, shots, "console-overview")
	stopPoll()

	// Tail the channel, then send to it from the Send page.
	p.do(ctx, `location.hash = '#tail';
$('tail-id').value = `+strconv.Quote(ch)+`;
$('tail-form').requestSubmit();
return await until(() => $('tail-status').dataset.ready === '1');`, nil)
	var sent string
	p.do(ctx, `location.hash = '#send';
$('send-channels').value = `+strconv.Quote(ch)+`;
$('send-command').value = 'fromConsole';
$('send-params').value = '{"text": "sent from the console form", "n": 3}';
$('send-form').requestSubmit();
return await until(() => { const t = $('send-result').textContent; return t !== '' && t; });`, &sent)
	if !strings.HasPrefix(sent, "Sent: mid ") {
		t.Fatalf("send: %q", sent)
	}
	p.screenshotTo(ctx, shots, "console-send")
	var tailed string
	p.do(ctx, `location.hash = '#tail';
const li = await until(() => [...$('tail-list').children].find((li) => li.textContent.includes('fromConsole')));
return li.textContent;`, &tailed)
	if mid := strings.Fields(sent)[2]; !strings.Contains(tailed, mid) || !strings.Contains(tailed, "sent from the console form") {
		t.Fatalf("the tail shows %q, want the message %q", tailed, sent)
	}
	// The command filter hides what does not match, and shows it again.
	var shown []int
	p.do(ctx, `const n = () => $('tail-list').children.length;
$('tail-command').value = 'none-such'; $('tail-command').dispatchEvent(new Event('input'));
const hidden = n();
$('tail-command').value = 'fromConsole'; $('tail-command').dispatchEvent(new Event('input'));
return [hidden, n()];`, &shown)
	if len(shown) != 2 || shown[0] != 0 || shown[1] != 1 {
		t.Fatalf("filtered tail shows %v messages, want [0 1]", shown)
	}
	p.screenshotTo(ctx, shots, "console-tail")

	// The channel's history, newest first: the console's message, then the
	// two published before.
	var mids []string
	p.do(ctx, `location.hash = '#channels';
$('lookup-id').value = `+strconv.Quote(ch)+`;
$('lookup').requestSubmit();
const ol = await until(() => $('lookup-history'));
return [...ol.querySelectorAll('.head .mono')].map((e) => e.textContent);`, &mids)
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
	var revoked string
	p.do(ctx, `location.hash = '#registry';
window.confirm = () => true;
const btn = await until(() => document.querySelector('button[data-token="`+id+`"]:not([disabled])'));
btn.click();
return await until(() => { const c = document.querySelector('[data-token-state="`+id+`"]'); return c && c.textContent === 'revoked' && c.textContent; });`, &revoked)
	if code, body := configGet(); code != 401 || body["error"] != "invalid_token" {
		t.Fatalf("after revoking in the console, REST answers %d %v", code, body)
	}
	p.screenshotTo(ctx, shots, "console-registry")

	// Readable on a phone.
	p.viewport(ctx, 390, 844)
	p.do(ctx, `const last = $('ov-updated').textContent;
location.hash = '#overview';
return await until(() => $('ov-updated').textContent !== last);`, nil)
	p.screenshotTo(ctx, shots, "console-phone")
	p.viewport(ctx, 1280, 720)
}
