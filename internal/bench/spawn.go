package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pushpull/pushpull/internal/config"
)

// SpawnOptions says how to start a server for a bench.
type SpawnOptions struct {
	// Executable is the pushpull binary; empty means this program.
	Executable string
	// SignatureKey and SignatureAlgo are passed to serve.
	SignatureKey  string
	SignatureAlgo string
	// ExtraArgs are appended to the serve command line, e.g. --send-queue 4096.
	ExtraArgs []string
	// Floor starts the floor server (ServeFloor, through the executable's
	// bench --serve-floor) instead of pushpull serve; it takes no other
	// option and serves every route on one address.
	Floor bool
	// FloorUring has the floor server write with io_uring (FloorOptions).
	FloorUring bool
	// StartTimeout bounds the wait for /readyz; 0 means 15 s.
	StartTimeout time.Duration
}

// Spawned is a `pushpull serve` child process.
type Spawned struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// InternalURL is where it serves /pub/, /api/ and /server-stat/: its
	// internal listener, or URL when both are served on one address.
	InternalURL string
	// PID is the server's process id.
	PID int

	cmd     *exec.Cmd
	dataDir string
	log     *logSummary
	exited  chan struct{}
	waitErr error
}

// Spawn starts `pushpull serve` on a free loopback port with a temporary
// data directory and waits until its /readyz answers: live is not enough,
// a cluster node must also have reached Redis. The trusted routes go
// on a second free loopback port, passed as --internal-addr, so that the
// bench works whatever the server's default layout is; an --internal-addr
// among ExtraArgs is used instead.
func Spawn(ctx context.Context, opt SpawnOptions) (*Spawned, error) {
	exe := opt.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the pushpull executable: %w", err)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pushpull-bench-")
	if err != nil {
		return nil, fmt.Errorf("create the server's data dir: %w", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"serve", "--addr", addr, "--data-dir", dir,
		"--signature-key", opt.SignatureKey, "--log-level", "warn"}
	internal, given := internalAddrArg(opt.ExtraArgs)
	if opt.Floor {
		args = []string{"bench", "--serve-floor", addr}
		if opt.FloorUring {
			args = append(args, "--floor-uring")
		}
		internal, given = config.SameAddr, true
	}
	if !given {
		iport, err := freePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		internal = "127.0.0.1:" + strconv.Itoa(iport)
		args = append(args, "--internal-addr", internal)
	}
	trusted := "http://" + addr
	if internal != "" && internal != config.SameAddr {
		trusted = "http://" + internal
	}
	if opt.SignatureAlgo != "" && !opt.Floor {
		args = append(args, "--signature-algo", opt.SignatureAlgo)
	}
	if !opt.Floor {
		args = append(args, opt.ExtraArgs...)
	}
	// Not CommandContext: the child must be stopped with SIGTERM and waited
	// for even when ctx is already cancelled (see Stop).
	cmd := exec.Command(exe, args...)
	logs := &logSummary{}
	cmd.Stdout = logs
	cmd.Stderr = logs
	cmd.SysProcAttr = childAttr()
	s := &Spawned{URL: "http://" + addr, InternalURL: trusted, cmd: cmd, dataDir: dir, log: logs, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The kernel's parent-death signal (childAttr) follows the thread
		// that started the child, not the process: keep that thread alive,
		// and to this goroutine only, until the child exits.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s serve: %w", exe, err)
	}
	s.PID = cmd.Process.Pid
	timeout := opt.StartTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	if err := s.waitReady(ctx, timeout); err != nil {
		_ = s.Stop(5 * time.Second)
		return nil, err
	}
	return s, nil
}

func (s *Spawned) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited at start (%v): %s", s.waitErr, s.log.tail())
		case <-ctx.Done():
			return fmt.Errorf("the server did not answer /readyz within %s: %s", timeout, s.log.tail())
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM, waits up to timeout for a graceful exit (SIGKILL
// after that) and removes the data directory.
func (s *Spawned) Stop(timeout time.Duration) error {
	defer os.RemoveAll(s.dataDir)
	select {
	case <-s.exited:
		return s.exitError()
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop the server: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.exited:
		return s.exitError()
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("the server did not stop within %s of SIGTERM; killed", timeout)
	}
}

func (s *Spawned) exitError() error {
	if s.waitErr != nil {
		return fmt.Errorf("the server exited: %w", s.waitErr)
	}
	return nil
}

// Log returns what the server logged, one entry per distinct message.
func (s *Spawned) Log() []LogCount { return s.log.counts() }

// internalAddrArg finds --internal-addr among serve flags (either dash
// form, with = or as the next argument) and returns its last value.
func internalAddrArg(args []string) (addr string, found bool) {
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if name != "internal-addr" || !strings.HasPrefix(args[i], "-") {
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return "", true // serve will refuse it
			}
			i++
			value = args[i]
		}
		addr, found = value, true
	}
	return addr, found
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// LogCount is one distinct message the server logged and how often.
type LogCount struct {
	Level   string `json:"level"`
	Message string `json:"msg"`
	Count   int    `json:"count"`
	// Example is the first full line with this message.
	Example string `json:"example"`
}

// logSummary takes the server's slog text output and keeps a count per
// distinct message instead of the lines: a run can make thousands of
// connections log the same warning.
type logSummary struct {
	mu      sync.Mutex
	partial []byte
	byMsg   map[string]*LogCount
	order   []string
	last    []string
}

const (
	maxDistinctMessages = 50
	maxLineKept         = 300
	tailLines           = 5
)

func (l *logSummary) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	data := append(l.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		l.line(string(data[:i]))
		data = data[i+1:]
	}
	if len(data) > 64<<10 { // a line that never ends
		l.line(string(data))
		data = nil
	}
	l.partial = append(l.partial[:0], data...)
	return len(p), nil
}

func (l *logSummary) line(s string) {
	if len(s) > maxLineKept {
		s = s[:maxLineKept] + "…"
	}
	l.last = append(l.last, s)
	if len(l.last) > tailLines {
		l.last = l.last[1:]
	}
	level, msg := slogField(s, "level="), slogField(s, "msg=")
	if msg == "" {
		msg = s
	}
	key := level + " " + msg
	if l.byMsg == nil {
		l.byMsg = map[string]*LogCount{}
	}
	c, ok := l.byMsg[key]
	if !ok {
		if len(l.order) >= maxDistinctMessages {
			key = "other"
			if c, ok = l.byMsg[key]; !ok {
				c = &LogCount{Message: "(other messages)", Example: s}
				l.byMsg[key] = c
				l.order = append(l.order, key)
			}
		} else {
			c = &LogCount{Level: level, Message: msg, Example: s}
			l.byMsg[key] = c
			l.order = append(l.order, key)
		}
	}
	c.Count++
}

// slogField returns the value of key (like "msg=") in a slog text line,
// unquoted.
func slogField(line, key string) string {
	from := 0
	for {
		j := strings.Index(line[from:], key)
		if j < 0 {
			return ""
		}
		j += from
		if j == 0 || line[j-1] == ' ' {
			line = line[j+len(key):]
			break
		}
		from = j + 1
	}
	if strings.HasPrefix(line, `"`) {
		if q, err := strconv.QuotedPrefix(line); err == nil {
			if u, err := strconv.Unquote(q); err == nil {
				return u
			}
		}
		return line
	}
	v, _, _ := strings.Cut(line, " ")
	return v
}

func (l *logSummary) counts() []LogCount {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LogCount, 0, len(l.order))
	for _, k := range l.order {
		out = append(out, *l.byMsg[k])
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out
}

func (l *logSummary) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.last) == 0 {
		return "it logged nothing"
	}
	var b bytes.Buffer
	b.WriteString("its last lines:")
	for _, s := range l.last {
		b.WriteString("\n  ")
		b.WriteString(s)
	}
	return b.String()
}
