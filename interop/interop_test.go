// Package interop runs the official Bitrix24 PullClient (npm
// @bitrix24/b24jssdk, under Node) against a real pushpull process:
//
//	go test ./interop/ -run PullClient
package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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

// signatureKey is what every test server signs channels with.
const signatureKey = "SECRET"

// once-per-binary setup. Each step runs lazily, so the Node self-check still
// runs while the server does not build.
var (
	nodeModules struct {
		once sync.Once
		err  error
	}
	serverBinary struct {
		once sync.Once
		dir  string
		path string
		err  error
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if serverBinary.dir != "" {
		os.RemoveAll(serverBinary.dir)
	}
	os.Exit(code)
}

// ensureNodeModules installs the pinned npm packages when node_modules is
// missing or older than package-lock.json. Missing Node or npm fails the
// test rather than skipping it: these tests are the proof that the official
// client works.
func ensureNodeModules(t *testing.T) {
	t.Helper()
	nodeModules.once.Do(func() { nodeModules.err = installNodeModules() })
	if nodeModules.err != nil {
		t.Fatal(nodeModules.err)
	}
}

func installNodeModules() error {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required for the interop tests: %w", tool, err)
		}
	}
	version, err := exec.Command("node", "--version").Output()
	if err != nil {
		return fmt.Errorf("node --version: %w", err)
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(version)), "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < 20 {
		return fmt.Errorf("the interop tests need Node 20 or later, found %s", version)
	}
	lock, err := os.Stat("package-lock.json")
	if err != nil {
		return err
	}
	// npm writes node_modules/.package-lock.json on every install.
	if mods, err := os.Stat(filepath.Join("node_modules", ".package-lock.json")); err == nil && !mods.ModTime().Before(lock.ModTime()) {
		return nil
	}
	if out, err := exec.Command("npm", "ci", "--no-audit", "--no-fund").CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci: %w\n%s", err, out)
	}
	return nil
}

// buildServer builds ./cmd/pushpull once per test binary and returns its path.
func buildServer(t *testing.T) string {
	t.Helper()
	b := &serverBinary
	b.once.Do(func() {
		// go test runs a package's tests in its directory: the repo root is
		// the parent of this file's directory.
		root, err := filepath.Abs("..")
		if err != nil {
			b.err = err
			return
		}
		if b.dir, b.err = os.MkdirTemp("", "pushpull-interop"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "pushpull")
		build := exec.Command("go", "build", "-o", b.path, "./cmd/pushpull")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/pushpull: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// server is one running pushpull process.
type server struct {
	base     string // http://127.0.0.1:PORT
	internal string // the trusted listener (--internal-addr): /pub/, /api/, /server-stat/
	cmd      *exec.Cmd
	logs     syncBuffer    // the server's output; tests may read it while it runs
	killed   bool          // by kill: its exit is expected
	exited   chan struct{} // closed when the process has ended, with exitErr
	exitErr  error
}

// kill ends the process with SIGKILL, as a crash would: nothing is drained
// or saved.
func (s *server) kill(t *testing.T) {
	t.Helper()
	s.killed = true
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
}

// startServer runs `pushpull serve` on a free loopback port with a fresh
// data dir and the test signature key, plus args, and waits until /readyz
// answers 200. It is stopped with SIGTERM when the test ends.
//
// The server derives its public URL from --addr, so it cannot listen on
// port 0: a port is found free and closed again, and another test may take
// it before the server binds it. The server then exits at once and this
// tries another port; and it waits for the server's own "listening" line, so
// that a process which took the port is never mistaken for it.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	bin := buildServer(t)
	for attempt := 1; ; attempt++ {
		s, err := tryStartServer(t, bin, args)
		if err == nil {
			s.stopAtCleanup(t)
			if err := s.waitReady(t); err != nil {
				t.Fatal(err)
			}
			return s
		}
		if attempt == 5 || !strings.Contains(s.logs.String(), "address already in use") {
			t.Fatalf("%v\nserver log:\n%s", err, s.logs.String())
		}
	}
}

// tryStartServer starts the process and waits until it has bound its port.
func tryStartServer(t *testing.T, bin string, args []string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	internalAddr := iln.Addr().String()
	iln.Close()
	s := &server{base: "http://" + addr, internal: "http://" + internalAddr, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"serve", "--addr", addr, "--internal-addr", internalAddr, "--data-dir", t.TempDir(),
		"--signature-key", signatureKey, "--log-level", "debug"}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = &s.logs, &s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exitErr = s.cmd.Wait(); close(s.exited) }()
	// The log line is the signal that this process holds the port: it
	// offers no other.
	listening := `"pushpull listening" addr=` + addr + " "
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for delay := 5 * time.Millisecond; !strings.Contains(s.logs.String(), listening); delay = min(2*delay, 200*time.Millisecond) {
		select {
		case <-ctx.Done():
			_ = s.cmd.Process.Kill()
			<-s.exited
			return s, fmt.Errorf("server not listening on %s within 20 s", addr)
		case <-s.exited:
			return s, fmt.Errorf("server exited before it listened on %s: %v", addr, s.exitErr)
		case <-time.After(delay):
		}
	}
	return s, nil
}

func (s *server) stopAtCleanup(t *testing.T) {
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
			if s.exitErr != nil && !s.killed {
				t.Errorf("server exited with %v", s.exitErr)
			}
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			t.Error("server did not stop within 30 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
}

// waitReady polls /readyz: the process offers no other signal. It asks the
// internal listener, which stays plain HTTP when --tls-cert is given.
func (s *server) waitReady(t *testing.T) error {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.internal+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server not healthy within 20 s: %v", err)
		case <-s.exited:
			return fmt.Errorf("server exited before it was healthy: %v", s.exitErr)
		case <-time.After(delay):
		}
	}
}

// publish posts body to unsigned channel ids, as the Bitrix PHP module does.
func (s *server) publish(t *testing.T, body string, ids ...string) {
	t.Helper()
	s.publishExpiring(t, 0, body, ids...)
}

// publishExpiring is publish with a Message-Expiry header when expiry > 0.
func (s *server) publishExpiring(t *testing.T, expiry int, body string, ids ...string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		s.internal+"/pub/?CHANNEL_ID="+strings.Join(ids, "/"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if expiry > 0 {
		req.Header.Set("Message-Expiry", strconv.Itoa(expiry))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
}

// body is a message as Bitrix's PHP module encodes it (docs/protocol.md,
// "Messages and ids").
func body(moduleID, command, params string) string {
	now := time.Now()
	return fmt.Sprintf(`{"module_id":%q,"command":%q,"params":%s,"extra":{"server_time":%q,"server_time_unix":%.4f,"server_name":"portal.test","revision_web":19,"revision_mobile":3}}`,
		moduleID, command, params, now.Format(phpDateC), float64(now.UnixMicro())/1e6)
}

// newID is a random channel id, 32 hex digits like Bitrix's.
func newID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// sign is "<id>.<hex HMAC-SHA1(key, id)>", computed independently of the
// server's code.
func sign(key, id string) string {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(id))
	return id + "." + hex.EncodeToString(m.Sum(nil))
}

// signPublic is the signature of a public id: the HMAC of "public:"+id.
func signPublic(key, id string) string {
	return strings.TrimPrefix(sign(key, "public:"+id), "public:"+id+".")
}

// phpDateC is PHP's date('c'). It repeats rest.PHPDateLayout on purpose:
// like sign, what this suite sends as Bitrix is written independently of
// the server's code, so a wrong server layout cannot hide in both.
const phpDateC = "2006-01-02T15:04:05-07:00"

// makeConfig is what Bitrix's pull.application.config.get returns for a
// personal-mode server of the given version, without the version-4 public
// ids (see makeConfigV4): docs/protocol.md, "REST API".
func makeConfig(baseURL, key string, version int, privateID, sharedID string) map[string]any {
	u, err := url.Parse(baseURL)
	if err != nil {
		panic(err)
	}
	sub := baseURL + "/sub/"
	ws := "ws://" + u.Host + "/sub/"
	start := time.Now()
	end := start.Add(43205 * time.Second)
	channel := func(typ, id string) map[string]any {
		return map[string]any{"id": sign(key, id), "start": start.Format(phpDateC), "end": end.Format(phpDateC), "type": typ}
	}
	private := channel("private", privateID)
	private["public_id"] = ""
	return map[string]any{
		"server": map[string]any{
			"version": version, "server_enabled": true, "mode": "personal", "hostname": u.Hostname(),
			"long_polling": sub, "long_pooling_secure": sub,
			"websocket_enabled": true, "websocket": ws, "websocket_secure": ws,
			"publish_enabled": version > 3, "publish": baseURL + "/pubweb/", "publish_secure": baseURL + "/pubweb/",
			"config_timestamp": 0,
		},
		"api":            map[string]any{"revision_web": 19, "revision_mobile": 3},
		"channels":       map[string]any{"private": private, "shared": channel("shared", sharedID)},
		"publicChannels": false,
	}
}

// Event is one line printed by pullclient.mjs.
type Event struct {
	Event    string          `json:"event"`
	Status   string          `json:"status"`
	ModuleID string          `json:"module_id"`
	Command  string          `json:"command"`
	Params   json.RawMessage `json:"params"`
	MID      string          `json:"mid"`
	Client   bool            `json:"client"`
	Level    string          `json:"level"`
	Error    string          `json:"error"`
	Method   string          `json:"method"`
	OK       bool            `json:"ok"`
	Cmd      string          `json:"cmd"`
	Result   json.RawMessage `json:"result"`
	UserID   int             `json:"userId"`
	IsOnline bool            `json:"isOnline"`
	Extra    struct {
		Sender *struct {
			Type int    `json:"type"`
			ID   string `json:"id"`
		} `json:"sender"`
	} `json:"extra"`
	Line string `json:"-"`
}

// ClientInput is what pullclient.mjs reads.
type ClientInput struct {
	Config    map[string]any `json:"config,omitempty"`
	UserID    int            `json:"userId"`
	Transport string         `json:"transport"` // "websocket" or "longpolling"
	MID       string         `json:"mid,omitempty"`
	// REST, when set, makes the client fetch its config from pushpull's
	// REST API with this access token instead of being handed Config.
	REST *RESTAuth `json:"rest,omitempty"`
	// OAuth, when set, makes the client use the SDK's own B24OAuth with
	// these options (accessToken, refreshToken, expires, clientEndpoint,
	// serverEndpoint, domain, memberId…) and secret (clientId, clientSecret).
	OAuth *OAuthInput `json:"oauth,omitempty"`
	// CAFile, when set, is a PEM file of certificate authorities Node
	// trusts besides its own (NODE_EXTRA_CA_CERTS), for https and wss.
	CAFile string `json:"-"`
}

// OAuthInput configures b24jssdk's B24OAuth.
type OAuthInput struct {
	Options map[string]any    `json:"options"`
	Secret  map[string]string `json:"secret"`
}

// RESTAuth is where and how pullclient.mjs calls the REST API.
type RESTAuth struct {
	URL  string `json:"url"`
	Auth string `json:"auth,omitempty"`
	// Webhook is a webhook URL, http://host/rest/USER/SECRET/, used
	// instead of Auth.
	Webhook string `json:"webhook,omitempty"`
}

// PullClient is one running pullclient.mjs.
type PullClient struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	done   chan struct{} // closed once stdout is drained and the process reaped

	mu     sync.Mutex
	events []Event
	wake   chan struct{} // closed and replaced when events grows or the process ends
	next   int           // the next event WaitFor looks at
	// strict makes WaitFor fail on a message or user status event that
	// does not match, instead of skipping it: set by tests that account
	// for every one of them. A status change also arrives as a message of
	// module "online" just before its userStatus event, which stands for it.
	strict bool
}

// startPullClient starts the official client with in; ctx ending sends it
// SIGTERM. It is stopped, and its stderr logged on failure, when the test ends.
func startPullClient(t *testing.T, ctx context.Context, in ClientInput) *PullClient {
	t.Helper()
	ensureNodeModules(t)
	arg, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	c := &PullClient{t: t, done: make(chan struct{}), wake: make(chan struct{})}
	c.cmd = exec.CommandContext(ctx, "node", "pullclient.mjs", string(arg))
	c.cmd.Cancel = func() error { return c.cmd.Process.Signal(syscall.SIGTERM) }
	c.cmd.WaitDelay = 10 * time.Second
	c.cmd.Stderr = &c.stderr
	if in.CAFile != "" {
		c.cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+in.CAFile)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go c.read(stdout)
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("pullclient stderr:\n%s", c.stderr.String())
		}
	})
	return c
}

// read queues stdout lines (without bound, so Node never blocks on a full
// pipe), then reaps the process.
func (c *PullClient) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		e := Event{Line: sc.Text()}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			e = Event{Event: "error", Error: "unparsable line", Line: sc.Text()}
		}
		c.mu.Lock()
		c.events = append(c.events, e)
		close(c.wake)
		c.wake = make(chan struct{})
		c.mu.Unlock()
	}
	_ = c.cmd.Wait()
	close(c.done)
	c.mu.Lock()
	close(c.wake)
	c.mu.Unlock()
}

// WaitFor consumes events until one satisfies match and returns it. An
// "error" event that does not match, the process ending, or ctx ending is
// an error.
func (c *PullClient) WaitFor(ctx context.Context, match func(Event) bool) (Event, error) {
	for {
		c.mu.Lock()
		if c.next < len(c.events) {
			e := c.events[c.next]
			c.next++
			c.mu.Unlock()
			c.t.Logf("pullclient: %s", e.Line)
			if match(e) {
				return e, nil
			}
			if e.Event == "error" {
				return e, fmt.Errorf("pullclient error: %s", e.Line)
			}
			if c.strict && (e.Event == "message" && e.ModuleID != "online" || e.Event == "userStatus") {
				return e, fmt.Errorf("unexpected %s: %s", e.Event, e.Line)
			}
			continue
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-c.done:
			c.mu.Lock()
			more := c.next < len(c.events)
			c.mu.Unlock()
			if !more {
				return Event{}, fmt.Errorf("pullclient exited (%v)", c.cmd.ProcessState)
			}
		case <-wake:
		case <-ctx.Done():
			return Event{}, context.Cause(ctx)
		}
	}
}

// mustWaitFor is WaitFor failing the test, naming what it waited for.
func (c *PullClient) mustWaitFor(ctx context.Context, what string, match func(Event) bool) Event {
	c.t.Helper()
	e, err := c.WaitFor(ctx, match)
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", what, err)
	}
	return e
}

func (c *PullClient) waitOnline(ctx context.Context) {
	c.t.Helper()
	c.mustWaitFor(ctx, "status online", func(e Event) bool { return e.Event == "status" && e.Status == "online" })
}

// nextMessage is the next message event; other kinds are skipped.
func (c *PullClient) nextMessage(ctx context.Context) Event {
	c.t.Helper()
	return c.mustWaitFor(ctx, "a message", func(e Event) bool { return e.Event == "message" })
}

// command sends one stdin command to pullclient.mjs.
func (c *PullClient) command(cmd map[string]any) {
	c.t.Helper()
	line, err := json.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.stdin.Write(append(line, '\n')); err != nil {
		c.t.Fatal(err)
	}
}

// Stop ends the client as a closed tab would (its stdin closes) and waits
// for it; after 10 s it is killed. Its remaining events stay readable.
func (c *PullClient) Stop() {
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// testContext bounds a whole test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a bytes.Buffer that the server process writes while a test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
