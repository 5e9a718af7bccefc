package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/netpoll"
	"github.com/pushpull/pushpull/internal/wire"
)

// The floor server is the least a push server can spend on a delivery: it
// answers the routes the bench uses (/sub/ over WebSocket, /pub/,
// /server-stat/, /readyz), checks no signature, keeps no history, and for
// each publish encodes one text frame per channel and writes it to every
// subscribed socket, spread over one worker per core: one write per
// delivery while the workers keep up, one writev per socket for all that
// queued while they did not.
// What the bench measures against it is the cost of the system calls and the
// kernel's loopback path; pushpull's cost divided by it is the overhead of
// everything else (docs/performance.md, "The floor").
//
// It speaks only what the bench's WebSocket subscribers need: text frames,
// no long polling, no protobuf.
//
// With FloorOptions.Uring a worker hands the kernel all its sockets' writes
// of a pass in one io_uring_enter instead of one writev per socket: the
// floor of a server that makes one system call per burst rather than per
// socket (docs/performance.md, "The floor").

// floorMaxBody bounds a /pub/ body; the bench's bodies are far smaller.
const floorMaxBody = 1 << 20

// FloorOptions says how the floor server writes.
type FloorOptions struct {
	// Uring submits each worker's writes of a pass with one io_uring_enter
	// (Linux); where the kernel refuses io_uring the workers use writev,
	// and say so in the log.
	Uring bool
	// newRing replaces netpoll.NewRing in tests, to force the fallback.
	newRing func(entries uint32) (*netpoll.Ring, error)
}

// floorRingEntries is each worker's io_uring submission queue: a pass
// writes to at most as many sockets at once (more take several calls).
const floorRingEntries = 4096

// ServeFloor serves the floor server on ln until ctx is cancelled.
func ServeFloor(ctx context.Context, ln net.Listener, log *slog.Logger, opt FloorOptions) error {
	ids, err := message.NewGenerator(uint64(time.Now().Unix()), 0)
	if err != nil {
		return fmt.Errorf("floor server: %w", err)
	}
	f := &floor{ids: ids, log: log, shards: make([]floorShard, runtime.GOMAXPROCS(0))}
	setup := opt.newRing
	if setup == nil {
		setup = netpoll.NewRing
	}
	for i := range f.shards {
		s := &f.shards[i]
		s.conns = make(map[channel.ID][]*floorConn)
		s.jobs = make(chan floorJob, 1024)
		s.log = log
	}
	for i := range f.shards {
		if !opt.Uring {
			break
		}
		if f.shards[i].ring, err = setup(floorRingEntries); err != nil {
			log.Warn("floor server: io_uring refused, writing with writev", "err", err)
			for j := range i {
				f.shards[j].ring.Close()
				f.shards[j].ring = nil
			}
			break
		}
	}
	f.uring = f.shards[0].ring != nil
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /server-stat/", f.serveStat)
	mux.HandleFunc("GET /sub/", f.serveSubscribe)
	mux.HandleFunc("POST /pub/", f.servePublish)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	var workers sync.WaitGroup
	for i := range f.shards {
		workers.Go(func() { f.shards[i].run() })
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		_ = srv.Close()
	}()
	err = srv.Serve(ln)
	close(stopped)
	// Handlers may still run after Serve returns: no publish is queued
	// once the queues are closed.
	f.mu.Lock()
	f.stopped = true
	for i := range f.shards {
		close(f.shards[i].jobs)
	}
	f.mu.Unlock()
	workers.Wait()
	var sum floorCounts
	for i := range f.shards {
		sum.add(f.shards[i].counts)
		if f.shards[i].ring != nil {
			f.shards[i].ring.Close()
		}
	}
	log.Info(sum.String(f.uring))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("floor server: %w", err)
}

type floor struct {
	ids    *message.Generator
	log    *slog.Logger
	shards []floorShard
	next   atomic.Uint64 // round-robin shard for the next connection
	open   atomic.Int64  // WebSocket connections open now
	uring  bool          // the workers write with io_uring
	// mu orders publishes (read) against the end (write): after stopped,
	// the workers' queues are closed.
	mu      sync.RWMutex
	stopped bool
}

// floorShard is one worker's connections: each connection belongs to one
// shard, so a publish's writes are shared out between the cores without
// locks on the write path.
type floorShard struct {
	// mu guards conns. With io_uring the worker also holds it (read) while
	// the kernel writes to the raw descriptors, so that a connection is
	// never closed, and its descriptor number reused, under a write.
	mu    sync.RWMutex
	conns map[channel.ID][]*floorConn
	jobs  chan floorJob
	log   *slog.Logger

	ring    *netpoll.Ring // nil: writev
	writes  []netpoll.RingWrite
	writing []*floorConn // the writes' connections
	counts  floorCounts
}

type floorConn struct {
	conn net.Conn
	ids  []channel.ID
	// fd is the socket's descriptor for io_uring, -1 without; valid while
	// the connection is listed in its shard (see floorShard.mu).
	fd   int
	dead atomic.Bool
}

// floorCounts is what a worker wrote, for the log line at the end: the
// system calls per delivery of the run.
type floorCounts struct {
	deliveries int // frames written to sockets
	writes     int // sockets written to with writev (one or more calls)
	enters     int // io_uring_enter calls
	ringWrites int // sockets written to through io_uring
	finished   int // io_uring writes that were short and finished with writev
}

func (c *floorCounts) add(o floorCounts) {
	c.deliveries += o.deliveries
	c.writes += o.writes
	c.enters += o.enters
	c.ringWrites += o.ringWrites
	c.finished += o.finished
}

func (c floorCounts) String(uring bool) string {
	per := func(n int) float64 { return float64(n) / float64(max(c.deliveries, 1)) }
	if !uring {
		return fmt.Sprintf("floor server (writev): %d deliveries, %d socket writes (%.3f per delivery)",
			c.deliveries, c.writes, per(c.writes))
	}
	return fmt.Sprintf("floor server (io_uring): %d deliveries, %d io_uring_enter calls (%.4f per delivery) "+
		"for %d socket writes, %d finished with writev, %d written with writev",
		c.deliveries, c.enters, per(c.enters), c.ringWrites, c.finished, c.writes)
}

// floorJob is one encoded WebSocket frame for the subscribers of a channel.
type floorJob struct {
	ch    channel.ID
	frame []byte
}

// floorBatch bounds how many queued publishes one pass of a worker merges.
const floorBatch = 256

// run writes what is queued. Publishes that queued up while the worker
// wrote are merged: each connection gets them in one writev, as any server
// that batches per connection would do when it falls behind, so that the
// floor is the fewest system calls the arrival pattern allows, not one per
// delivery.
func (s *floorShard) run() {
	pending := make(map[*floorConn]net.Buffers)
	for job := range s.jobs {
		batch := []floorJob{job}
	more:
		for len(batch) < floorBatch {
			select {
			case j, ok := <-s.jobs:
				if !ok {
					break more
				}
				batch = append(batch, j)
			default:
				break more
			}
		}
		s.mu.RLock()
		for _, j := range batch {
			for _, c := range s.conns[j.ch] {
				pending[c] = append(pending[c], j.frame)
			}
		}
		if s.ring != nil {
			s.writeRing(pending) // unlocks s.mu
		} else {
			s.mu.RUnlock()
		}
		for c, bufs := range pending {
			s.writev(c, bufs)
			delete(pending, c)
		}
	}
}

// writeRing writes the pending bursts of the connections that have a
// descriptor through the ring, in one io_uring_enter per floorRingEntries
// sockets, and takes them out of pending. It is called with s.mu held for
// reading and releases it once the kernel is done with the descriptors.
// A write the socket took only in part (or not at all: EAGAIN) is finished
// with the runtime's blocking write, as the writev path would.
func (s *floorShard) writeRing(pending map[*floorConn]net.Buffers) {
	for c, bufs := range pending {
		if c.fd >= 0 && !c.dead.Load() {
			s.writes = append(s.writes, netpoll.RingWrite{FD: c.fd, Pieces: bufs})
			s.writing = append(s.writing, c)
		}
	}
	before := s.ring.Enters()
	err := s.ring.Writev(s.writes)
	s.mu.RUnlock()
	s.counts.enters += s.ring.Enters() - before
	if err != nil {
		s.log.Error("floor server: io_uring failed, writing with writev from now on", "err", err)
		s.ring.Close()
		s.ring = nil
	}
	for i, c := range s.writing {
		bufs := pending[c]
		delete(pending, c)
		s.counts.deliveries += len(bufs)
		s.counts.ringWrites++
		w := &s.writes[i]
		switch {
		case errors.Is(w.Err, syscall.EAGAIN):
		case w.Err != nil:
			// An error, or a write the failed ring may or may not have
			// done: the connection's stream is no longer known.
			c.dead.Store(true)
			_ = c.conn.Close()
			continue
		}
		rest := net.Buffers(netpoll.Advance(bufs, w.N))
		if len(rest) == 0 {
			continue
		}
		s.counts.finished++
		if _, err := rest.WriteTo(c.conn); err != nil {
			c.dead.Store(true)
			_ = c.conn.Close()
		}
	}
	clear(s.writes)
	clear(s.writing)
	s.writes, s.writing = s.writes[:0], s.writing[:0]
}

// writev writes bufs to c with the runtime's blocking writev.
func (s *floorShard) writev(c *floorConn, bufs net.Buffers) {
	if c.dead.Load() {
		return
	}
	s.counts.deliveries += len(bufs)
	s.counts.writes++
	if _, err := bufs.WriteTo(c.conn); err != nil {
		c.dead.Store(true)
		_ = c.conn.Close()
	}
}

func (f *floor) serveStat(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode([]map[string]any{{
		"pid": os.Getpid(), "websockets": f.open.Load(), "pollings": 0,
		"goroutines": runtime.NumGoroutine(),
	}})
}

// channelsOf reads the channel ids of a CHANNEL_ID list, ignoring the
// signatures: the floor trusts everyone.
func channelsOf(list string) ([]channel.ID, error) {
	var ids []channel.ID
	for elem := range strings.SplitSeq(list, "/") {
		raw, _, _ := strings.Cut(elem, ".")
		id, err := channel.ParseID(raw)
		if err != nil {
			return nil, fmt.Errorf("channel %q: %w", raw, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (f *floor) serveSubscribe(w http.ResponseWriter, r *http.Request) {
	ids, err := channelsOf(r.URL.Query().Get("CHANNEL_ID"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		f.log.Debug("floor: upgrade", "err", err)
		return
	}
	c := &floorConn{conn: conn, ids: ids, fd: -1}
	if sc, ok := conn.(syscall.Conn); ok && f.uring {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { c.fd = int(fd) })
		}
	}
	shard := &f.shards[f.next.Add(1)%uint64(len(f.shards))]
	shard.mu.Lock()
	for _, id := range ids {
		shard.conns[id] = append(shard.conns[id], c)
	}
	shard.mu.Unlock()
	f.open.Add(1)
	defer f.open.Add(-1)
	// Read and drop what the client sends until it goes.
	for {
		h, err := ws.ReadHeader(conn)
		if err != nil || h.OpCode == ws.OpClose {
			break
		}
		if _, err := io.CopyN(io.Discard, conn, h.Length); err != nil {
			break
		}
	}
	shard.remove(c)
}

// remove unlists c and closes it, never while the worker writes to its
// descriptor.
func (s *floorShard) remove(c *floorConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range c.ids {
		s.conns[id] = slices.DeleteFunc(s.conns[id], func(o *floorConn) bool { return o == c })
		if len(s.conns[id]) == 0 {
			delete(s.conns, id)
		}
	}
	c.dead.Store(true)
	_ = c.conn.Close()
}

func (f *floor) servePublish(w http.ResponseWriter, r *http.Request) {
	ids, err := channelsOf(r.URL.Query().Get("CHANNEL_ID"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, floorMaxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	m := &message.Message{ID: f.ids.Next(), Body: body, Created: time.Now()}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.stopped {
		http.Error(w, "stopping", http.StatusServiceUnavailable)
		return
	}
	for _, id := range ids {
		payload := wire.AppendTextFrame(nil, m, id)
		var frame bytes.Buffer
		frame.Grow(ws.MaxHeaderSize + len(payload))
		// A bytes.Buffer does not fail to write.
		_ = ws.WriteHeader(&frame, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(payload))})
		frame.Write(payload)
		for i := range f.shards {
			f.shards[i].jobs <- floorJob{ch: id, frame: frame.Bytes()}
		}
	}
	w.WriteHeader(http.StatusOK)
}
