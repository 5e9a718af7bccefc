// Package interop runs the official Bitrix24 PullClient (npm
// @bitrix24/b24jssdk, under Node) against a real pushpull process.
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
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The binary is built once per test run, in TestMain.
var pushpullBin string

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "pushpull-interop")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	pushpullBin = filepath.Join(dir, "pushpull")
	build := exec.Command("go", "build", "-o", pushpullBin, "../cmd/pushpull")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return 0, fmt.Errorf("build pushpull: %w", err)
	}
	if err := ensureNodeModules(); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// ensureNodeModules installs the pinned npm packages when they are missing
// or older than the lockfile. A missing Node is a failure, not a skip: these
// tests are the proof that the official client works.
func ensureNodeModules() error {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required for the interop tests: %w", tool, err)
		}
	}
	lock, err := os.Stat("package-lock.json")
	if err != nil {
		return err
	}
	if mods, err := os.Stat("node_modules/.package-lock.json"); err == nil && !mods.ModTime().Before(lock.ModTime()) {
		return nil
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci: %w", err)
	}
	return nil
}

const signatureKey = "interop-secret-key"

type server struct {
	base string
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// startServer runs pushpull on a free loopback port with a fresh data dir
// and stops it with SIGTERM when the test ends.
func startServer(t *testing.T, dataDir string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &server{base: "http://" + addr, logs: &bytes.Buffer{}}
	s.cmd = exec.Command(pushpullBin, "serve", "--addr", addr, "--data-dir", dataDir,
		"--signature-key", signatureKey, "--log-level", "debug")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs)
		}
	})
	// Polling /healthz is the signal: the process offers no other.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server did not become healthy: %v\n%s", err, s.logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("server exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Error("server did not stop on SIGTERM")
	}
}

// publish posts body to unsigned channel ids, as the Bitrix PHP module does.
func (s *server) publish(t *testing.T, body string, ids ...string) {
	t.Helper()
	resp, err := http.Post(s.base+"/pub/?CHANNEL_ID="+strings.Join(ids, "/"), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
}

func newID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// sign computes the channel signature independently of the server's code.
func sign(id string) string {
	m := hmac.New(sha1.New, []byte(signatureKey))
	m.Write([]byte(id))
	return id + "." + hex.EncodeToString(m.Sum(nil))
}

// signPublic is the signature of a public id: HMAC of "public:"+id.
func signPublic(id string) string {
	return sign("public:" + id)[len("public:"+id)+1:]
}

// peer is another user whose public channel a version-4 config lists.
type peer struct {
	userID   int
	publicID string
}

// makeConfigV4 is the version-4 config: the private channel carries its
// public id ("private:public.signature"), clients publish through /pubweb/,
// and publicChannels lists other users' public ids.
func makeConfigV4(base string, userID int, privateID, publicID, sharedID string, peers ...peer) map[string]any {
	cfg := makeConfig(base, privateID, sharedID)
	server := cfg["server"].(map[string]any)
	server["version"] = 4
	server["publish_enabled"] = true
	server["publish"] = base + "/pubweb/"
	server["publish_secure"] = base + "/pubweb/"
	priv := cfg["channels"].(map[string]any)["private"].(map[string]any)
	priv["id"] = sign(privateID + ":" + publicID)
	priv["public_id"] = publicID + "." + signPublic(publicID)
	public := map[string]any{}
	for _, p := range append(peers, peer{userID, publicID}) {
		public[fmt.Sprint(p.userID)] = map[string]any{
			"user_id": p.userID, "public_id": p.publicID, "signature": signPublic(p.publicID),
			"start": priv["start"], "end": priv["end"],
		}
	}
	cfg["publicChannels"] = public
	return cfg
}

// makeConfig builds what Bitrix's pull.application.config.get returns for a
// version-3 server (spec/protocol.md §3).
func makeConfig(base string, privateID, sharedID string) map[string]any {
	ws := "ws" + strings.TrimPrefix(base, "http") + "/sub/"
	lp := base + "/sub/"
	start := time.Now().UTC()
	end := start.Add(43205 * time.Second)
	ch := func(id string) map[string]any {
		return map[string]any{"id": sign(id), "start": start.Format(time.RFC3339), "end": end.Format(time.RFC3339), "type": "private"}
	}
	priv, shared := ch(privateID), ch(sharedID)
	shared["type"] = "shared"
	return map[string]any{
		"server": map[string]any{
			"version": 3, "server_enabled": true, "mode": "personal", "hostname": "pushpull.test",
			"long_polling": lp, "long_pooling_secure": lp,
			"websocket_enabled": true, "websocket": ws, "websocket_secure": ws,
			"publish_enabled": false, "publish": base + "/rest/", "publish_secure": base + "/rest/",
			"config_timestamp": 0,
		},
		"api":      map[string]any{"revision_web": 19, "revision_mobile": 3},
		"channels": map[string]any{"private": priv, "shared": shared},
	}
}

// event is one line of pullclient.mjs.
type event struct {
	Event    string          `json:"event"`
	Status   string          `json:"status"`
	ModuleID string          `json:"module_id"`
	Command  string          `json:"command"`
	Params   json.RawMessage `json:"params"`
	MID      string          `json:"mid"`
	Error    string          `json:"error"`
	Client   bool            `json:"client"`
	Extra    struct {
		Sender *struct {
			Type int    `json:"type"`
			ID   string `json:"id"`
		} `json:"sender"`
	} `json:"extra"`
}

type pullClient struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event
	stderr bytes.Buffer
}

type clientInput struct {
	Config    map[string]any `json:"config"`
	UserID    int            `json:"userId"`
	Transport string         `json:"transport"`
	MID       string         `json:"mid,omitempty"`
}

func startPullClient(t *testing.T, in clientInput) *pullClient {
	t.Helper()
	arg, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	c := &pullClient{events: make(chan event, 1000)}
	c.cmd = exec.Command("node", "pullclient.mjs", string(arg))
	c.cmd.Stderr = &c.stderr
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
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				c.events <- event{Event: "error", Error: "bad line: " + sc.Text()}
				continue
			}
			c.events <- e
		}
	}()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("pullclient stderr:\n%s", c.stderr.String())
		}
	})
	return c
}

// command sends one stdin command to pullclient.mjs.
func (c *pullClient) command(t *testing.T, cmd map[string]any) {
	t.Helper()
	line, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.stdin.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
}

// stop ends the client as a closed browser tab would.
func (c *pullClient) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// next returns the next event that matches, failing on client errors.
func (c *pullClient) next(t *testing.T, what string, match func(event) bool) event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-c.events:
			if !ok {
				t.Fatalf("pullclient exited while waiting for %s", what)
			}
			t.Logf("pullclient event: %+v", e)
			if e.Event == "error" {
				t.Fatalf("pullclient error while waiting for %s: %s", what, e.Error)
			}
			if match(e) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s from the PullClient within 30 s", what)
		}
	}
}

func (c *pullClient) waitOnline(t *testing.T) {
	t.Helper()
	c.next(t, "online status", func(e event) bool { return e.Event == "status" && e.Status == "online" })
}

func (c *pullClient) nextMessage(t *testing.T) event {
	t.Helper()
	return c.next(t, "message", func(e event) bool { return e.Event == "message" })
}
