package bench

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pushpull/pushpull/internal/wire"
)

func TestAppendBody(t *testing.T) {
	for _, size := range []int{0, 10, 40, 100, 4096} {
		body := appendBody(nil, 1700000000123456789, 42, size)
		if size >= 40 && len(body) != size {
			t.Errorf("size %d: body is %d bytes: %s", size, len(body), body)
		}
		var f frame
		parseFrame([]byte(`{"id":7,"mid":"17000000000000000000000042","channel":"c","tag":"t","time":"x","text":`+string(body)+`}`), &f)
		if !f.timed || f.sent != 1700000000123456789 || f.seq != 42 || !f.hasMid || string(f.mid[:]) != "17000000000000000000000042" {
			t.Errorf("size %d: parsed %+v from %s", size, f, body)
		}
	}
}

func TestNextFrame(t *testing.T) {
	data := []byte(wire.FrameStart + `{"id":1,"mid":"00000000000000000000000001","text":{"t":5,"s":0,"p":""}}` + wire.FrameEnd +
		wire.FrameStart + `{"id":2,"mid":"00000000000000000000000002","text":{"bench":"ready"}}` + wire.FrameEnd +
		wire.FrameStart + `{"id":3,"mid":"short","text":{"command":"x","t":9}}` + wire.FrameEnd)
	var got []frame
	for {
		var f frame
		rest, ok, err := nextFrame(data, &f)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, f)
		data = rest
	}
	if len(got) != 3 {
		t.Fatalf("%d frames", len(got))
	}
	if !got[0].timed || got[0].sent != 5 || got[0].seq != 0 || !got[0].hasMid {
		t.Errorf("frame 1: %+v", got[0])
	}
	if got[1].timed || !got[1].hasMid {
		t.Errorf("frame 2: %+v", got[1])
	}
	if got[2].timed || got[2].hasMid {
		t.Errorf("frame 3: %+v", got[2])
	}
	if _, _, err := nextFrame([]byte(wire.FrameStart+`{"id":1`), &frame{}); !errors.Is(err, errUnterminated) {
		t.Errorf("cut frame: err = %v", err)
	}
}

func TestDeliverDoesNotAllocate(t *testing.T) {
	r, err := newRun(testConfig("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	s := &sub{}
	r.subs = []*sub{s}
	r.counting.Store(true)
	var data []byte
	for i := range 5 {
		data = append(data, wire.FrameStart+`{"id":1,"mid":"0000000000000000000000000`+fmt.Sprint(i)+`","channel":"c","tag":"t","time":"x","text":`...)
		data = appendBody(data, time.Now().UnixNano(), int64(i), 100)
		data = append(data, "}"+wire.FrameEnd...)
	}
	now := time.Now().UnixNano()
	if n := testing.AllocsPerRun(100, func() { r.deliver(s, data, now) }); n != 0 {
		t.Errorf("deliver allocates %.1f times per message", n)
	}
}

func TestHistogram(t *testing.T) {
	// Buckets are contiguous and ordered.
	for v := uint64(0); v < 1<<20; v++ {
		b := bucketOf(v)
		if bucketHigh(b) < v || (b > 0 && bucketHigh(b-1) >= v) {
			t.Fatalf("value %d in bucket %d [%d, %d]", v, b, bucketHigh(b-1)+1, bucketHigh(b))
		}
	}
	if b := bucketOf(maxMicros); b != numBuckets-1 {
		t.Errorf("max value in bucket %d of %d", b, numBuckets)
	}
	// Quantiles are within 1/64 above the exact ones.
	rec := newRecorder(4)
	var vals []uint64
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 10000 {
		v := uint64(rng.ExpFloat64() * 5000)
		vals = append(vals, v)
		rec.record(i, time.Duration(v)*time.Microsecond)
	}
	slices.Sort(vals)
	h := rec.snapshot()
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.quantile(q)
		if got < exact || float64(got) > float64(exact)*(1+1.0/64)+1 {
			t.Errorf("q%.2f = %d, exact %d", q, got, exact)
		}
	}
	if h.max != vals[len(vals)-1] || h.total != 10000 {
		t.Errorf("max %d total %d", h.max, h.total)
	}
	if l := (&histogram{}).latency(); l != (Latency{}) {
		t.Errorf("empty latency %+v", l)
	}
}

func TestHTTPConn(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Last-Message-Id", "00000000000000000000000042")
			_, _ = w.Write(append([]byte(r.Method+" "+r.URL.RawQuery+" "), body...))
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c := &httpConn{addr: host, host: host, dialTimeout: time.Second}
	defer c.close()
	ctx := t.Context()

	a, err := c.do(ctx, "POST", []byte("/length?a=b"), []byte(`{"x":1}`), time.Second)
	if err != nil || a.status != 200 || string(a.body) != `POST a=b {"x":1}` || string(a.lastMessageID) != "00000000000000000000000042" {
		t.Fatalf("length: %d %q %q %v", a.status, a.body, a.lastMessageID, err)
	}
	first := c.conn
	a, err = c.do(ctx, "GET", []byte("/chunked"), nil, time.Second)
	if err != nil || a.status != 200 || string(a.body) != "part0;part1;part2;" || len(a.lastMessageID) != 0 {
		t.Fatalf("chunked: %d %q %q %v", a.status, a.body, a.lastMessageID, err)
	}
	a, err = c.do(ctx, "GET", []byte("/304"), nil, time.Second)
	if err != nil || a.status != 304 || len(a.body) != 0 {
		t.Fatalf("304: %d %q %v", a.status, a.body, err)
	}
	if c.conn != first {
		t.Error("the connection was not kept alive")
	}
	a, err = c.do(ctx, "GET", []byte("/close"), nil, time.Second)
	if err != nil || string(a.body) != "bye" || c.conn != nil {
		t.Fatalf("close: %q %v, conn %v", a.body, err, c.conn)
	}
	if a, err = c.do(ctx, "GET", []byte("/304"), nil, time.Second); err != nil || a.status != 304 {
		t.Fatalf("after close: %d %v", a.status, err)
	}

	// Cancellation wakes a request waiting for its answer.
	hold := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hold }))
	defer slow.Close()
	defer close(hold)
	host = strings.TrimPrefix(slow.URL, "http://")
	c2 := &httpConn{addr: host, host: host, dialTimeout: time.Second}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c2.do(cctx, "GET", []byte("/"), nil, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled request: err = %v", err)
	}
}

func TestProcParsing(t *testing.T) {
	stat := []byte("1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 8 0 100 1000 200\n")
	if d, err := parseStatCPU(stat); err != nil || d != 3800*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 3.8s", d, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("short stat parsed")
	}
	status := []byte("Name:\tpushpull\nVmPeak:\t  9000 kB\nVmHWM:\t    8000 kB\nVmRSS:\t    4096 kB\n")
	if n, err := statusKiB(status, "VmRSS:"); err != nil || n != 4096<<10 {
		t.Errorf("VmRSS = %d, %v", n, err)
	}
	if n, err := statusKiB(status, "VmHWM:"); err != nil || n != 8000<<10 {
		t.Errorf("VmHWM = %d, %v", n, err)
	}
	if _, err := statusKiB(status, "VmSwap:"); err == nil {
		t.Error("missing line parsed")
	}
	m, err := parseMachineCPU([]byte("cpu  100 5 50 1000 20 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil || m.busy != 1600*time.Millisecond || m.steal != 100*time.Millisecond {
		t.Errorf("parseMachineCPU = %+v, %v; want busy 1.6s, steal 0.1s", m, err)
	}
	if d, err := parseStatCPUWithChildren(stat); err != nil || d != 3800*time.Millisecond {
		t.Errorf("parseStatCPUWithChildren = %v, %v; want 3.8s", d, err)
	}
	if d := otherProcsDelta(map[int]time.Duration{1: time.Second, 2: time.Second}, map[int]time.Duration{1: 3 * time.Second, 3: time.Second}); d != 3*time.Second {
		t.Errorf("otherProcsDelta = %v, want 3s", d)
	}
	if others := otherProcsCPU(syscall.Getpid()); len(others) == 0 {
		t.Error("no other process found")
	} else if _, ok := others[syscall.Getpid()]; ok {
		t.Error("excluded process listed")
	}
	if _, err := readMachineCPU(); err != nil {
		t.Error(err)
	}
	// This process's own entries parse.
	if _, _, err := procRSS(syscall.Getpid()); err != nil {
		t.Error(err)
	}
	if _, err := procCPU(syscall.Getpid()); err != nil {
		t.Error(err)
	}
}

func TestLogSummary(t *testing.T) {
	var l logSummary
	for i := range 3 {
		fmt.Fprintf(&l, "time=2025-01-01T00:00:0%dZ level=WARN msg=\"dropping slow subscriber: send queue full\" queue=1024 channels=1\n", i)
	}
	_, _ = io.WriteString(&l, "time=x level=ERROR msg=boom err=\"a b\"\npanic: not slog")
	_, _ = io.WriteString(&l, "\n")
	got := l.counts()
	want := []LogCount{
		{Level: "WARN", Message: "dropping slow subscriber: send queue full", Count: 3},
		{Level: "ERROR", Message: "boom", Count: 1},
		{Level: "", Message: "panic: not slog", Count: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].Level != want[i].Level || got[i].Message != want[i].Message || got[i].Count != want[i].Count || got[i].Example == "" {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if tail := l.tail(); !strings.Contains(tail, "panic: not slog") {
		t.Errorf("tail %q", tail)
	}
}

func TestErrKind(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, "connection refused"},
		{fmt.Errorf("read: %w", io.EOF), "connection closed by the server without a close frame"},
		{&closedError{code: 4010, reason: "4010: Wrong Channel Id."}, "closed by the server: 4010 4010: Wrong Channel Id."},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.EMFILE}, "too many open files"},
		{context.DeadlineExceeded, "timeout"},
	} {
		if got := errKind(tt.err); got != tt.want {
			t.Errorf("errKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if got := errKind(bytes.ErrTooLarge); got != bytes.ErrTooLarge.Error() {
		t.Errorf("other error: %q", got)
	}
}

func TestForEachOutgoing(t *testing.T) {
	// The first protobuf vector made with the b24jssdk model, then garbage.
	data, _ := hex.DecodeString("0a7b0a790a770a0d1700000000000000000000004212597b226d6f64756c655f6964223a226170706c69636174696f6e222c22636f6d6d616e64223a2270696e67222c22706172616d73223a7b2261223a317d2c226578747261223a7b227265766973696f6e5f776562223a31397d7d1880a3052500f153652a020802")
	var f frame
	var got []frame
	if err := forEachOutgoing(data, &f, func(f *frame) { got = append(got, *f) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].mid[:]) != "17000000000000000000000042" || !got[0].hasMid || got[0].timed {
		t.Fatalf("frames %+v", got)
	}
	body := appendBody(nil, 123, 7, 40)
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, data[8:8+13])
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	msg = protowire.AppendBytes(msg, body)
	batch := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
		protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
			protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), msg)))
	got = nil
	if err := forEachOutgoing(batch, &f, func(f *frame) { got = append(got, *f) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].timed || got[0].sent != 123 || got[0].seq != 7 {
		t.Fatalf("timed frame %+v", got)
	}
	if err := forEachOutgoing([]byte{0x0a, 0xff}, &f, func(*frame) {}); err == nil {
		t.Fatal("a truncated batch was accepted")
	}
}
