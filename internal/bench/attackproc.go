package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// An attacker on the network spends its own CPU on its own machine. Run in
// the bench's process, the attackers would take the cores from the
// subscribers and the /healthz prober that measure the server, and their
// scheduling delay would be counted as the server's. So by default they run
// in a process of their own, started at a lower priority (AttackConfig.Nice)
// so that what is left of the machine goes to the server and the measuring
// process first, and its CPU time is reported apart.
//
// The two processes talk over the child's standard streams, one line at a
// time: the parent writes the order (JSON: where and what to attack), the
// child answers "ready" once its bodies are built, the parent writes "start"
// as the publishing starts and closes the child's standard input to stop
// it; the child then writes its results (JSON) and exits.

// attackLoad sends the attacks of one run, in this process or another.
type attackLoad interface {
	// start starts the attackers; the function it returns stops them and
	// waits for them.
	start(ctx context.Context) (stop func())
	// halt stops the attackers early, for reason.
	halt(reason string)
	stoppedWhy() string
	results() ([]AttackKindResult, error)
}

// attackOrder is what the attack process is told to do.
type attackOrder struct {
	Host   string       `json:"host"`
	Addr   string       `json:"addr"`
	Config AttackConfig `json:"config"`
}

const (
	readyLine = "ready"
	startLine = "start"
	// attackProcTimeout bounds the wait for the attack process to get
	// ready and, once told to stop, to report and exit.
	attackProcTimeout = 30 * time.Second
)

// ServeAttack is the attack process (pushpull bench --attack-only): it
// reads an order from in, builds the attackers and answers "ready", starts
// them on "start", and stops them when in ends or ctx is cancelled, then
// writes their results to out.
func ServeAttack(ctx context.Context, in io.Reader, out io.Writer) error {
	r := bufio.NewReader(in)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read the attack order: %w", err)
	}
	var o attackOrder
	if err := json.Unmarshal(line, &o); err != nil {
		return fmt.Errorf("read the attack order: %w", err)
	}
	ac, err := o.Config.complete()
	if err != nil {
		return err
	}
	a := newAttackers(o.Host, o.Addr, ac)
	if _, err := io.WriteString(out, readyLine+"\n"); err != nil {
		return fmt.Errorf("answer ready: %w", err)
	}
	line, err = r.ReadBytes('\n')
	if err == nil && strings.TrimSpace(string(line)) == startLine {
		ctx, cancel := context.WithCancel(ctx)
		// The end of in, whatever it carries, is the order to stop.
		go func() {
			_, _ = io.Copy(io.Discard, r)
			cancel()
		}()
		stop := a.start(ctx)
		<-ctx.Done()
		stop()
	}
	res, _ := a.results()
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode the attack results: %w", err)
	}
	if _, err := out.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write the attack results: %w", err)
	}
	return nil
}

// attackProc is an attack process seen from the bench.
type attackProc struct {
	cmd    *exec.Cmd
	pid    int
	nice   int // the child's nice value, as the kernel reports it
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *lockedWriter // what the child said on stderr, for errors

	exited  chan struct{}
	waitErr error
	state   *os.ProcessState

	closeIn sync.Once
	done    chan struct{} // closed when res and resErr are set
	res     []AttackKindResult
	resErr  error

	mu      sync.Mutex
	stopped string
}

// startAttackProc starts the command named by ac.Command at ac.Nice, sends
// it its order and waits for it to be ready.
func startAttackProc(ctx context.Context, host, addr string, ac AttackConfig) (*attackProc, error) {
	order, err := json.Marshal(attackOrder{Host: host, Addr: addr, Config: ac})
	if err != nil {
		return nil, fmt.Errorf("encode the attack order: %w", err)
	}
	cmd := exec.Command(ac.Command[0], ac.Command[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("attack process: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("attack process: %w", err)
	}
	p := &attackProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), stderr: &lockedWriter{w: &bytes.Buffer{}},
		exited: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = childAttr()
	if err := startLowered(cmd, ac.Nice, func() {
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	}); err != nil {
		return nil, fmt.Errorf("start the attack process %s: %w", ac.Command[0], err)
	}
	p.pid = cmd.Process.Pid
	p.nice, _ = procNice(p.pid)
	ready := make(chan error, 1)
	go func() {
		if _, err := stdin.Write(append(order, '\n')); err != nil {
			ready <- err
			return
		}
		line, err := p.out.ReadString('\n')
		if err == nil && strings.TrimSpace(line) != readyLine {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
	}()
	t := time.NewTimer(attackProcTimeout)
	defer t.Stop()
	select {
	case err = <-ready:
	case <-t.C:
		err = errors.New("not ready in time")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("attack process: %w%s", err, p.said())
	}
	return p, nil
}

func (p *attackProc) start(ctx context.Context) func() {
	go func() {
		defer close(p.done)
		line, err := p.out.ReadBytes('\n')
		if err != nil {
			p.resErr = fmt.Errorf("attack process: read its results: %w", err)
			return
		}
		if err := json.Unmarshal(line, &p.res); err != nil {
			p.resErr = fmt.Errorf("attack process: read its results: %w", err)
		}
	}()
	if _, err := io.WriteString(p.stdin, startLine+"\n"); err != nil {
		p.halt(fmt.Sprintf("the attack process did not take the order to start: %v", err))
	}
	// A cancelled run stops the child too.
	stopCtx := context.AfterFunc(ctx, p.closeStdin)
	return func() {
		stopCtx()
		p.closeStdin()
		t := time.NewTimer(attackProcTimeout)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.kill()
			<-p.done
		}
		select {
		case <-p.exited:
		case <-t.C:
			p.kill()
		}
	}
}

func (p *attackProc) closeStdin() { p.closeIn.Do(func() { _ = p.stdin.Close() }) }

// kill ends the child at once and waits for it.
func (p *attackProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (p *attackProc) halt(reason string) {
	p.mu.Lock()
	if p.stopped == "" {
		p.stopped = reason
	}
	p.mu.Unlock()
	p.closeStdin()
}

func (p *attackProc) stoppedWhy() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

func (p *attackProc) results() ([]AttackKindResult, error) {
	select {
	case <-p.done:
	default:
		return nil, errors.New("attack process: no results before it was stopped")
	}
	if p.resErr != nil {
		return nil, fmt.Errorf("%w%s", p.resErr, p.said())
	}
	return p.res, nil
}

// cpu is the CPU time the child has used so far.
func (p *attackProc) cpu() time.Duration {
	select {
	case <-p.exited:
		return p.state.UserTime() + p.state.SystemTime()
	default:
	}
	if d, err := procCPU(p.pid); err == nil {
		return d
	}
	// Gone between the two looks: it is being waited for.
	<-p.exited
	return p.state.UserTime() + p.state.SystemTime()
}

// said is what the child wrote on stderr, as the tail of an error.
func (p *attackProc) said() string {
	s := strings.TrimSpace(p.stderr.String())
	if s == "" {
		return ""
	}
	return "; it said: " + s
}

// lockedWriter is a buffer written by exec's copying goroutine and read by
// the bench.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
