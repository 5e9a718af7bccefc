// Package redistest starts real redis-server processes for tests. A test that
// needs Redis gets its own server on a free loopback port, with its data in
// the test's temporary directory; when redis-server is missing it is
// installed from Debian's packages, and when that is impossible the test
// fails: cluster behaviour is never skipped silently.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
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

// Server is one redis-server process. Stop and Start may be called again to
// take it down and bring it back on the same port and data directory, which
// is how tests simulate a Redis restart.
type Server struct {
	Addr string // host:port on loopback
	dir  string
	bin  string
	args []string
	// config is a config file given first (Sentinel needs one).
	config string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// installOnce serialises the apt-get run of a test binary's parallel tests.
var installOnce sync.Once

// Binary returns the path of redis-server, installing Debian's package
// when it is not on PATH.
func Binary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	var installErr error
	installOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "sh", "-c",
			"(apt-get install -y redis-server || (apt-get update && apt-get install -y redis-server)) 2>&1").CombinedOutput()
		if err != nil {
			installErr = fmt.Errorf("installing redis-server with apt-get: %w\n%s", err, out)
		}
	})
	if installErr != nil {
		return "", installErr
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server is still not on PATH after installing it: %w", err)
	}
	return p, nil
}

// Start starts a redis-server for t and stops it when t ends. Persistence is
// on (an RDB snapshot at shutdown and an append-only file), so a Stop and
// Start keeps the data, as a production Redis would.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s, err := New(t.TempDir(), extraArgs...)
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// New starts a redis-server keeping its data in dir. The caller stops it.
func New(dir string, extraArgs ...string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, args: extraArgs}
	// A port found free may be taken before redis binds it; try a few.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = s.Start()
		if err == nil {
			return s, nil
		}
		if attempt == 4 {
			return nil, err
		}
	}
}

// URL is the server's address as a redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Start (re)starts the process on the server's port and waits until it
// answers PING.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("redis-server is already running")
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{
		"--bind", "127.0.0.1", "--port", port,
		"--dir", s.dir, "--dbfilename", "dump.rdb",
		"--appendonly", "yes", "--appendfsync", "everysec",
		"--save", "", "--daemonize", "no", "--protected-mode", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}, s.args...)
	if s.config != "" {
		args = append([]string{s.config, "--bind", "127.0.0.1", "--port", port, "--daemonize", "no",
			"--protected-mode", "no", "--logfile", filepath.Join(s.dir, "redis.log")}, s.args...)
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for ping(s.Addr) != nil {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited at start (%v); log:\n%s", s.Addr, waitErr, s.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s did not answer PING in 10s; log:\n%s", s.Addr, s.log())
		}
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// Stop shuts the server down gracefully (SIGTERM: it writes its files and
// exits) and waits for the process to end, which releases its port.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// LogPath is the server's log file.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "redis.log") }

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

// Do sends one command in RESP and returns the first line of the reply,
// enough for test set-up and checks (FLUSHALL, CONFIG SET, DBSIZE).
func (s *Server) Do(args ...string) (string, error) {
	return do(s.Addr, args...)
}

func ping(addr string) error {
	reply, err := do(addr, "PING")
	if err != nil {
		return err
	}
	if reply != "+PONG" {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

func do(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Cluster is a Redis Cluster of test servers, every slot assigned.
type Cluster struct {
	Nodes []*Server
}

// URL names every node, the form pushpull's --redis takes for a cluster.
func (c *Cluster) URL() string {
	u := c.Nodes[0].URL()
	for i, n := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + n.Addr
	}
	return u
}

// StartCluster starts n redis-servers in cluster mode for t, joins them into
// one cluster with redis-cli and waits until the cluster reports ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{}
	args := []string{"create"}
	for range n {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli (Debian's redis-tools, installed with redis-server): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, append([]string{"--cluster"}, append(args, "--cluster-replicas", "0", "--cluster-yes")...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, s := range c.Nodes {
		host, port, _ := net.SplitHostPort(s.Addr)
		for {
			out, err := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "cluster", "info").Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("redis cluster node %s not ok within 30 s: %s %v", s.Addr, out, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return c
}

// StartSentinel starts a Redis Sentinel for t that monitors primary under
// the name "mymaster", and returns the --redis URL that reaches the primary
// through it.
func StartSentinel(t testing.TB, primary *Server) string {
	t.Helper()
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(primary.Addr)
	conf := filepath.Join(dir, "sentinel.conf")
	content := fmt.Sprintf("sentinel monitor mymaster %s %s 1\nsentinel down-after-milliseconds mymaster 5000\n", host, port)
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	// A sentinel is redis-server in sentinel mode; its config file must be
	// writable, and comes first.
	s := &Server{dir: dir, bin: bin}
	for attempt := 0; ; attempt++ {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		s.args = []string{"--sentinel"}
		s.config = conf
		if err = s.Start(); err == nil {
			break
		}
		if attempt == 4 {
			t.Fatalf("sentinel: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	return s.URL() + "?master_set=mymaster"
}
