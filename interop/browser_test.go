package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The browser harness: browser.mjs runs Debian's Chromium headless through
// playwright-core, and these types drive it from a test. A test opens pages,
// evaluates JavaScript in them, and reads what they report through
// window.harnessEmit. Any console error, uncaught exception or failed
// request (a CORS refusal is all three) fails the test, and a failed test
// leaves a screenshot of each page it had open.

// chromiumPath is Debian's package: the tests never download a browser.
const chromiumPath = "/usr/bin/chromium"

var chromiumInstall struct {
	once sync.Once
	err  error
}

// ensureChromium installs Debian's chromium when it is missing. Failing to
// install it fails the test: the browser matrix is never skipped silently.
func ensureChromium(t *testing.T) {
	t.Helper()
	chromiumInstall.once.Do(func() {
		if _, err := os.Stat(chromiumPath); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// Another process may hold dpkg's lock: wait for it rather than fail.
		const install = "apt-get install -y -o DPkg::Lock::Timeout=300 chromium"
		cmd := exec.CommandContext(ctx, "sh", "-c", "("+install+" || (apt-get update && "+install+")) 2>&1")
		// No package may stop to ask a question: the tests have no terminal.
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			chromiumInstall.err = fmt.Errorf("installing chromium with apt-get: %w\n%s", err, out)
			return
		}
		if _, err := os.Stat(chromiumPath); err != nil {
			chromiumInstall.err = fmt.Errorf("apt-get installed chromium, but: %w", err)
		}
	})
	if chromiumInstall.err != nil {
		t.Fatal(chromiumInstall.err)
	}
}

// browserEvent is one line printed by browser.mjs.
type browserEvent struct {
	Event    string          `json:"event"`
	ID       int             `json:"id"`
	Page     string          `json:"page"`
	Value    json.RawMessage `json:"value"`
	Error    string          `json:"error"`
	Type     string          `json:"type"`
	Text     string          `json:"text"`
	Location string          `json:"location"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Failure  string          `json:"failure"`
	Data     json.RawMessage `json:"data"`
	Version  string          `json:"version"`
}

// Browser is one headless Chromium, shared by the pages of a test; each page
// has its own browser context (storage, cookies), as a fresh profile would.
type Browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  syncBuffer
	done    chan struct{} // closed when stdout is drained and the process reaped
	Version string

	// writing serialises stdin writes. It is not mu: a write blocked on a
	// full pipe must not stop read from draining stdout.
	writing sync.Mutex
	mu      sync.Mutex // guards what follows
	nextID  int
	pending map[int]chan browserEvent
	pages   map[string]*Page
}

// startBrowser starts browser.mjs and its Chromium, and closes them when the
// test ends.
func startBrowser(t *testing.T) *Browser {
	t.Helper()
	ensureNodeModules(t)
	ensureChromium(t)
	arg, err := json.Marshal(map[string]string{"executablePath": chromiumPath})
	if err != nil {
		t.Fatal(err)
	}
	b := &Browser{t: t, done: make(chan struct{}), pending: map[int]chan browserEvent{}, pages: map[string]*Page{}}
	b.cmd = exec.Command("node", "browser.mjs", string(arg))
	b.cmd.Stderr = &b.stderr
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan browserEvent, 1)
	b.pending[0] = ready
	go b.read(stdout)
	t.Cleanup(b.stop)
	select {
	case e := <-ready:
		b.Version = e.Version
	case <-b.done:
		t.Fatalf("browser.mjs exited before the browser was ready: %v\n%s", b.cmd.ProcessState, b.stderr.String())
	case <-time.After(time.Minute):
		t.Fatalf("the browser was not ready within a minute\n%s", b.stderr.String())
	}
	return b
}

// read dispatches browser.mjs's lines: answers to their command, page
// events to their page. Lines about a page already closed are dropped.
func (b *Browser) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e browserEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			e = browserEvent{Type: "error", Text: "browser.mjs printed an unparsable line: " + sc.Text()}
		}
		b.mu.Lock()
		switch e.Event {
		case "ready", "result":
			if ch, ok := b.pending[e.ID]; ok {
				delete(b.pending, e.ID)
				ch <- e
			}
		case "":
			// Not a line of the protocol: every page is suspect.
			for _, p := range b.pages {
				p.add(e)
			}
		default:
			if p, ok := b.pages[e.Page]; ok {
				p.add(e)
			}
		}
		b.mu.Unlock()
	}
	_ = b.cmd.Wait()
	close(b.done)
}

// stop closes stdin, on which browser.mjs closes the browser and exits.
func (b *Browser) stop() {
	b.stdin.Close()
	select {
	case <-b.done:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Signal(syscall.SIGKILL)
		<-b.done
	}
	if b.t.Failed() {
		b.t.Logf("browser.mjs stderr:\n%s", b.stderr.String())
	}
}

// call sends one command and waits for its answer.
func (b *Browser) call(ctx context.Context, cmd map[string]any) (json.RawMessage, error) {
	ch := make(chan browserEvent, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	cmd["id"] = id
	line, err := json.Marshal(cmd)
	if err == nil {
		b.writing.Lock()
		_, err = b.stdin.Write(append(line, '\n'))
		b.writing.Unlock()
	}
	if err != nil {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return nil, fmt.Errorf("browser %s: %w", cmd["cmd"], err)
	}
	select {
	case e := <-ch:
		if e.Error != "" {
			return nil, fmt.Errorf("browser %s: %s", cmd["cmd"], e.Error)
		}
		return e.Value, nil
	case <-b.done:
		return nil, fmt.Errorf("browser %s: browser.mjs exited (%v)", cmd["cmd"], b.cmd.ProcessState)
	case <-ctx.Done():
		return nil, fmt.Errorf("browser %s: %w", cmd["cmd"], context.Cause(ctx))
	}
}

// Page is one page of the browser, in its own context.
type Page struct {
	t    *testing.T
	b    *Browser
	name string

	mu       sync.Mutex
	emits    []json.RawMessage
	next     int      // the next emit WaitEmit looks at
	problems []string // console errors, uncaught exceptions, failed requests
	wake     chan struct{}
}

// open loads url in a new page called name (unique in the browser), of
// 1280×720 CSS pixels. When the test ends, a problem the page had fails it;
// a failed test saves a screenshot of the page, named in the failure.
func (b *Browser) open(t *testing.T, ctx context.Context, name, url string) *Page {
	t.Helper()
	return b.openSized(t, ctx, name, url, 0, 0)
}

// openSized is open with a viewport of width×height CSS pixels (a phone's,
// say); 0×0 is the default.
func (b *Browser) openSized(t *testing.T, ctx context.Context, name, url string, width, height int) *Page {
	t.Helper()
	p := &Page{t: t, b: b, name: name, wake: make(chan struct{})}
	b.mu.Lock()
	b.pages[name] = p
	b.mu.Unlock()
	t.Cleanup(p.close)
	cmd := map[string]any{"cmd": "open", "page": name, "url": url}
	if width > 0 && height > 0 {
		cmd["viewport"] = map[string]int{"width": width, "height": height}
	}
	if _, err := b.call(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	return p
}

// add records e, under b.mu.
func (p *Page) add(e browserEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case e.Event == "emit":
		p.emits = append(p.emits, e.Data)
	case e.Event == "console" && (e.Type == "error" || e.Type == "assert"):
		p.problems = append(p.problems, fmt.Sprintf("console.%s: %s (%s)", e.Type, e.Text, e.Location))
	case e.Event == "pageerror":
		p.problems = append(p.problems, "uncaught: "+e.Error)
	// A request the page itself cancelled (a long poll it restarts) is
	// ERR_ABORTED; a CORS refusal or a refused connection is not.
	case e.Event == "requestfailed" && e.Failure != "net::ERR_ABORTED":
		p.problems = append(p.problems, fmt.Sprintf("request failed: %s %s: %s", e.Method, e.URL, e.Failure))
	case e.Event == "":
		p.problems = append(p.problems, e.Text)
	}
	switch e.Event {
	case "console":
		p.t.Logf("%s: console.%s: %s", p.name, e.Type, e.Text)
	case "requestfailed":
		p.t.Logf("%s: request failed: %s %s: %s", p.name, e.Method, e.URL, e.Failure)
	}
	close(p.wake)
	p.wake = make(chan struct{})
}

// Problems are the console errors, uncaught exceptions and failed requests
// the page has had so far.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// takeProblems returns the page's problems so far and forgets them: for a
// test that expects some.
func (p *Page) takeProblems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	problems := p.problems
	p.problems = nil
	return problems
}

// screenshot saves a PNG of the whole page at path.
func (p *Page) screenshot(ctx context.Context, path string) error {
	_, err := p.b.call(ctx, map[string]any{"cmd": "screenshot", "page": p.name, "path": path})
	return err
}

// eval evaluates a JavaScript expression in the page, awaiting it when it is
// a promise, and decodes its JSON value into result (which may be nil).
func (p *Page) eval(ctx context.Context, expr string, result any) {
	p.t.Helper()
	v, err := p.b.call(ctx, map[string]any{"cmd": "eval", "page": p.name, "expr": expr})
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v\nproblems: %q", p.name, expr, err, p.Problems())
	}
	if result != nil {
		if err := json.Unmarshal(v, result); err != nil {
			p.t.Fatalf("%s: %s returned %s: %v", p.name, expr, v, err)
		}
	}
}

// act does to the first element matching selector what a person would, once
// it is actionable (see browser.mjs), and returns the answer.
func (p *Page) act(ctx context.Context, action, selector, value string) json.RawMessage {
	p.t.Helper()
	v, err := p.b.call(ctx, map[string]any{"cmd": "act", "page": p.name, "action": action, "selector": selector, "value": value})
	if err != nil {
		p.t.Fatalf("%s: %s %s: %v\nproblems: %q", p.name, action, selector, err, p.Problems())
	}
	return v
}

func (p *Page) click(ctx context.Context, selector string) {
	p.t.Helper()
	p.act(ctx, "click", selector, "")
}

// fill replaces the text of an input or textarea.
func (p *Page) fill(ctx context.Context, selector, value string) {
	p.t.Helper()
	p.act(ctx, "fill", selector, value)
}

// press focuses the element and presses key ("Enter", "Tab", "a"…).
func (p *Page) press(ctx context.Context, selector, key string) {
	p.t.Helper()
	p.act(ctx, "press", selector, key)
}

// text is the element's innerText.
func (p *Page) text(ctx context.Context, selector string) string {
	p.t.Helper()
	var s string
	if err := json.Unmarshal(p.act(ctx, "text", selector, ""), &s); err != nil {
		p.t.Fatalf("%s: text of %s: %v", p.name, selector, err)
	}
	return s
}

// waitVisible waits until an element matching selector is visible.
func (p *Page) waitVisible(ctx context.Context, selector string) {
	p.t.Helper()
	p.act(ctx, "wait", selector, "")
}

// key presses key wherever the focus is, as keyboard navigation does.
func (p *Page) key(ctx context.Context, key string) {
	p.t.Helper()
	if _, err := p.b.call(ctx, map[string]any{"cmd": "key", "page": p.name, "value": key}); err != nil {
		p.t.Fatalf("%s: key %s: %v", p.name, key, err)
	}
}

// waitEmit consumes what the page emits until match accepts one, and returns
// it. A problem in the page fails the test at once.
func (p *Page) waitEmit(ctx context.Context, what string, match func(json.RawMessage) bool) json.RawMessage {
	p.t.Helper()
	for {
		p.mu.Lock()
		if len(p.problems) > 0 {
			problems := append([]string(nil), p.problems...)
			p.mu.Unlock()
			p.t.Fatalf("%s: waiting for %s: the page had problems:\n%s", p.name, what, strings.Join(problems, "\n"))
		}
		if p.next < len(p.emits) {
			d := p.emits[p.next]
			p.next++
			p.mu.Unlock()
			p.t.Logf("%s: emit %s", p.name, d)
			if match(d) {
				return d
			}
			continue
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-p.b.done:
			p.t.Fatalf("%s: waiting for %s: browser.mjs exited", p.name, what)
		case <-ctx.Done():
			p.t.Fatalf("%s: waiting for %s: %v", p.name, what, context.Cause(ctx))
		}
	}
}

// close fails the test on any problem the page had, saves a screenshot
// when the test failed, and closes the page.
func (p *Page) close() {
	if problems := p.Problems(); len(problems) > 0 {
		p.t.Errorf("%s: the page had problems:\n%s", p.name, strings.Join(problems, "\n"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if p.t.Failed() {
		// Outside t.TempDir, which is removed when the test ends.
		dir, err := os.MkdirTemp("", "pushpull-browser-")
		if err == nil {
			path := filepath.Join(dir, p.name+".png")
			if err = p.screenshot(ctx, path); err == nil {
				p.t.Errorf("%s: screenshot of the failed page: %s", p.name, path)
			}
		}
		if err != nil {
			p.t.Logf("%s: no screenshot: %v", p.name, err)
		}
	}
	if _, err := p.b.call(ctx, map[string]any{"cmd": "close", "page": p.name}); err != nil {
		p.t.Logf("%s: %v", p.name, err)
	}
	p.b.mu.Lock()
	delete(p.b.pages, p.name)
	p.b.mu.Unlock()
}

// serveFiles serves files (URL path to file path) on a new loopback port,
// so a page is of another origin than the server it talks to, and returns
// its origin.
func serveFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		data, err := os.ReadFile(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.ServeContent(w, r, filepath.Base(path), time.Time{}, bytes.NewReader(data))
	})}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("page server: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestBrowserHarness checks that the harness sees what it must fail a test
// on: a CORS refusal, a console error, an uncaught exception. It also checks
// that a page can report from its first script and that a screenshot is a
// PNG of the page.
func TestBrowserHarness(t *testing.T) {
	ctx := testContext(t)
	b := startBrowser(t)
	origin := serveFiles(t, map[string]string{"/": "browserpage/harness.html"})
	// Another origin, which sends no CORS headers.
	foreign := serveFiles(t, map[string]string{"/data": "browserpage/harness.html"})
	p := b.open(t, ctx, "harness", origin+"/")
	p.waitEmit(ctx, "the page's first report", func(d json.RawMessage) bool {
		return string(d) == `{"kind":"loaded","title":"pushpull: browser harness check"}`
	})
	if problems := p.takeProblems(); len(problems) != 0 {
		t.Fatalf("a clean page had problems: %q", problems)
	}

	var got string
	p.eval(ctx, `fetch(`+strconv.Quote(foreign+"/data")+`).then(() => 'read', (e) => e.name)`, &got)
	if got != "TypeError" {
		t.Fatalf("a cross-origin fetch without CORS headers: %q, want TypeError", got)
	}
	waitProblem(t, ctx, p, "the CORS refusal", "blocked by CORS policy")

	p.eval(ctx, `console.error('deliberate'), null`, nil)
	waitProblem(t, ctx, p, "the console error", "console.error: deliberate")
	p.eval(ctx, `setTimeout(() => { throw new Error('deliberately uncaught'); }), null`, nil)
	waitProblem(t, ctx, p, "the uncaught exception", "deliberately uncaught")

	// What a person does: type, move the focus with the keyboard, click.
	p.fill(ctx, "#name", "Ada")
	p.key(ctx, "Tab")
	var focused string
	p.eval(ctx, `document.activeElement.id`, &focused)
	if focused != "greet" {
		t.Fatalf("Tab from the input focused %q, want the button", focused)
	}
	p.key(ctx, "Enter")
	p.waitVisible(ctx, "#greeting")
	if got := p.text(ctx, "#greeting"); got != "Hello, Ada" {
		t.Fatalf("after Enter on the button: %q", got)
	}
	p.fill(ctx, "#name", "Grace")
	p.press(ctx, "#greet", "Space")
	if got := p.text(ctx, "#greeting"); got != "Hello, Grace" {
		t.Fatalf("after Space on the button: %q", got)
	}
	p.fill(ctx, "#name", "Linus")
	p.click(ctx, "#greet")
	if got := p.text(ctx, "#greeting"); got != "Hello, Linus" {
		t.Fatalf("after a click: %q", got)
	}

	path := filepath.Join(t.TempDir(), "page.png")
	if err := p.screenshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() != 1280 || img.Bounds().Dy() < 720 {
		t.Fatalf("screenshot: %v %v", err, img.Bounds())
	}

	// A phone-sized page renders at its width.
	phone := b.openSized(t, ctx, "phone", origin+"/", 390, 844)
	var width int
	phone.eval(ctx, `window.innerWidth`, &width)
	if width != 390 {
		t.Fatalf("a 390-pixel viewport is %d wide", width)
	}
}

// waitProblem waits until the page has had a problem containing want, and
// forgets the page's problems.
func waitProblem(t *testing.T, ctx context.Context, p *Page, what, want string) {
	t.Helper()
	for {
		p.mu.Lock()
		problems, wake := p.problems, p.wake
		p.mu.Unlock()
		if strings.Contains(strings.Join(problems, "\n"), want) {
			p.takeProblems()
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatalf("the harness never saw %s (%q); problems: %q", what, want, problems)
		}
	}
}
