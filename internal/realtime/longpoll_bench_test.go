package realtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

// BenchmarkLongPollCycle is the long-poll fan-out cycle over real loopback
// sockets and the server's HTTP stack: pollers wait on one channel, one
// publish answers them all, and each polls again with the mid it got, as
// the official clients do. It reports the process's cost per delivery, the
// whole cycle of a poll (request parsing, signature check, subscribe,
// history read, answer, re-poll); the pollers are raw keep-alive sockets
// that parse no more than the status line and Content-Length, so nearly
// all of it is the server's.
func BenchmarkLongPollCycle(b *testing.B) {
	const pollers = 200
	br, srv, stop := benchServer(b)
	defer stop()
	srv.opt.KeepPolls = true // as the server sets it
	hs := &http.Server{Handler: srv.Handler()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	defer func() { _ = hs.Close() }()

	ch := channel.ID{1}
	q := "/sub/?CHANNEL_ID=" + url.QueryEscape(srv.signer.SignChannel(ch)) + "&revision=19"
	var answered sync.WaitGroup
	failed := make(chan error, pollers)
	answered.Add(pollers)
	for range pollers {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		go func() {
			if err := rawPoller(conn, q, &answered); err != nil && !errors.Is(err, net.ErrClosed) {
				failed <- err
			}
		}()
	}
	for srv.hub.Subscribers(ch) < pollers {
		runtime.Gosched()
	}
	publish := func() {
		m := &message.Message{Body: benchBody, Expiry: 60, Receivers: []message.Receiver{{ID: ch}}, Sender: message.Sender{Type: message.SenderBackend}}
		if err := br.Publish(context.Background(), m); err != nil {
			b.Fatal(err)
		}
		answered.Wait()
		select {
		case err := <-failed:
			b.Fatal(err)
		default:
		}
		answered.Add(pollers)
	}
	publish() // every poller now carries a mid
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		publish()
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N*pollers), "cpu-ns/delivery")
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawPoller polls over conn, each time with the mid of the message it got
// last, as the official clients do, until conn is closed. Every answer must
// be a 200 with one message.
func rawPoller(conn net.Conn, query string, answered *sync.WaitGroup) error {
	r := bufio.NewReader(conn)
	req := make([]byte, 0, 512)
	var body []byte
	var mid []byte
	for {
		req = append(req[:0], "GET "...)
		req = append(req, query...)
		if mid != nil {
			req = append(req, "&mid="...)
			req = append(req, mid...)
		}
		req = append(req, " HTTP/1.1\r\nHost: bench\r\n\r\n"...)
		if _, err := conn.Write(req); err != nil {
			return err
		}
		status, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
			return fmt.Errorf("poll answered %q", status)
		}
		size := -1
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				size, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if size <= 0 {
			return fmt.Errorf("poll answered without a body")
		}
		body = slices.Grow(body[:0], size)[:size]
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		_, after, ok := bytes.Cut(body, []byte(`"mid":"`))
		if !ok || len(after) < 26 {
			return fmt.Errorf("poll answered %q: no mid", body)
		}
		mid = append(mid[:0], after[:26]...)
		answered.Done()
	}
}

// BenchmarkLongPollFloor is BenchmarkLongPollCycle's floor: the same
// pollers and the same answers, served by the least a Go server on the
// same I/O model (a goroutine per connection on the runtime's poller) can
// do: read a request, wait for the publish, write the answer encoded once
// for all. Its cpu-ns/delivery is the system calls, wake-ups and the
// pollers' own share, which the cycle's includes too; the difference is
// what the server's HTTP stack and the session spend.
func BenchmarkLongPollFloor(b *testing.B) {
	const pollers = 200
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var (
		mu     sync.Mutex
		cond   = sync.NewCond(&mu)
		round  int
		answer []byte
		ended  bool // the benchmark is over: waiting goroutines return
	)
	defer func() {
		mu.Lock()
		ended = true
		mu.Unlock()
		cond.Broadcast()
	}()
	ch := channel.ID{1}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				seen := 0 // the last round answered
				for {
					for { // the request, up to its blank line
						line, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					mu.Lock()
					for round <= seen && !ended {
						cond.Wait()
					}
					if ended {
						mu.Unlock()
						return
					}
					seen = round
					resp := answer
					mu.Unlock()
					if _, err := conn.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	var answered sync.WaitGroup
	failed := make(chan error, pollers)
	answered.Add(pollers)
	for range pollers {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		go func() {
			if err := rawPoller(conn, "/sub/?CHANNEL_ID=x", &answered); err != nil && !errors.Is(err, net.ErrClosed) {
				failed <- err
			}
		}()
	}
	publish := func() {
		mu.Lock()
		round++
		m := &message.Message{ID: message.ID{Epoch: 1, Seq: uint64(round)}, Body: benchBody, Created: time.Now()}
		frame := wire.AppendTextFrame(nil, m, ch)
		answer = fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: %d\r\nContent-Type: text/plain\r\nDate: %s\r\n\r\n%s",
			len(frame), time.Now().UTC().Format(http.TimeFormat), frame)
		mu.Unlock()
		cond.Broadcast()
		answered.Wait()
		select {
		case err := <-failed:
			b.Fatal(err)
		default:
		}
		answered.Add(pollers)
	}
	publish()
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		publish()
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N*pollers), "cpu-ns/delivery")
}
