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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
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

// floorMaxBody bounds a /pub/ body; the bench's bodies are far smaller.
const floorMaxBody = 1 << 20

// ServeFloor serves the floor server on ln until ctx is cancelled.
func ServeFloor(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	ids, err := message.NewGenerator(uint64(time.Now().Unix()), 0)
	if err != nil {
		return fmt.Errorf("floor server: %w", err)
	}
	f := &floor{ids: ids, log: log, shards: make([]floorShard, runtime.GOMAXPROCS(0))}
	for i := range f.shards {
		f.shards[i].conns = make(map[channel.ID][]*floorConn)
		f.shards[i].jobs = make(chan floorJob, 1024)
	}
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
	for i := range f.shards {
		close(f.shards[i].jobs)
	}
	workers.Wait()
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
}

// floorShard is one worker's connections: each connection belongs to one
// shard, so a publish's writes are shared out between the cores without
// locks on the write path.
type floorShard struct {
	mu    sync.RWMutex
	conns map[channel.ID][]*floorConn
	jobs  chan floorJob
}

type floorConn struct {
	conn net.Conn
	dead atomic.Bool
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
		s.mu.RUnlock()
		for c, bufs := range pending {
			if !c.dead.Load() {
				if _, err := bufs.WriteTo(c.conn); err != nil {
					c.dead.Store(true)
					_ = c.conn.Close()
				}
			}
			delete(pending, c)
		}
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
	c := &floorConn{conn: conn}
	shard := &f.shards[f.next.Add(1)%uint64(len(f.shards))]
	shard.mu.Lock()
	for _, id := range ids {
		shard.conns[id] = append(shard.conns[id], c)
	}
	shard.mu.Unlock()
	f.open.Add(1)
	defer f.open.Add(-1)
	// Read and drop what the client sends until it goes; a dead connection
	// stays listed but is skipped, which is all a bench run needs.
	for {
		h, err := ws.ReadHeader(conn)
		if err != nil || h.OpCode == ws.OpClose {
			break
		}
		if _, err := io.CopyN(io.Discard, conn, h.Length); err != nil {
			break
		}
	}
	c.dead.Store(true)
	_ = conn.Close()
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
