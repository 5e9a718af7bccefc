package realtime

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/token"
)

const testTenant = "abcdefghijklmnopqrstuvwxyz012345"

// tokenFor signs a connection token for user and channels, valid for an hour.
func (ts *testServer) tokenFor(user int64, chans ...channel.ID) string {
	now := time.Now()
	return token.Sign(token.Claims{Issuer: testTenant, IssuedAt: now, Expires: now.Add(time.Hour), User: user, Channels: chans},
		[]byte("SECURITYKEY123456"))
}

// rpcMessage is the params of an incoming.message notification.
type rpcMessage struct {
	Mid        string          `json:"mid"`
	Body       json.RawMessage `json:"body"`
	Sender     json.RawMessage `json:"sender"`
	UserParams json.RawMessage `json:"user_params"`
	Dictionary json.RawMessage `json:"dictionary"`
}

// rpcResponse is one JSON-RPC response.
type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rpcClient is a raw version 5 WebSocket client. It sorts what it reads
// into pings, incoming messages and responses (a batch array of responses
// arrives whole on batches), and never answers pings by itself.
type rpcClient struct {
	wmu    sync.Mutex // one writer at a time: frames must not interleave
	conn   net.Conn
	pings  chan struct{}
	msgs   chan rpcMessage
	resps  chan []rpcResponse
	frames chan string // every data frame as read, for tests of framing
	closed chan wsutil.ClosedError
	failed chan error
}

func (ts *testServer) dialRPC(t *testing.T, query string) *rpcClient {
	t.Helper()
	c, err := ts.tryDialRPC(t, query)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDialRPC is dialRPC for goroutines other than the test's, which must
// not call t.Fatal.
func (ts *testServer) tryDialRPC(t *testing.T, query string) (*rpcClient, error) {
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/sub/?" + query
	conn, r, err := dialRaw(t.Context(), u)
	if err != nil {
		return nil, err
	}
	c := &rpcClient{conn: conn, pings: make(chan struct{}, 100), msgs: make(chan rpcMessage, 1000),
		resps: make(chan []rpcResponse, 100), frames: make(chan string, 1000),
		closed: make(chan wsutil.ClosedError, 1), failed: make(chan error, 1)}
	readerCleanup(t, conn, func(quit <-chan struct{}) {
		readServer(conn, r, quit, c.closed, c.failed, func(data []byte, op ws.OpCode) bool {
			if op != ws.OpText {
				t.Errorf("JSON-RPC client got opcode %v", op)
				return false
			}
			if !put(c.frames, string(data), quit) {
				return false
			}
			switch string(data) {
			case "ping":
				return put(c.pings, struct{}{}, quit)
			case "pong": // the answer to our own text ping
				return true
			}
			if err := c.sort(data, quit); err != nil {
				if !errors.Is(err, errQuit) {
					t.Errorf("frame %s: %v", data, err)
				}
				return false
			}
			return true
		}, nil)
	})
	return c, nil
}

var errQuit = errors.New("test over")

func (c *rpcClient) sort(data []byte, quit <-chan struct{}) error {
	var elems []json.RawMessage
	if bytes.HasPrefix(data, []byte("[")) {
		if err := json.Unmarshal(data, &elems); err != nil {
			return err
		}
	} else {
		elems = []json.RawMessage{data}
	}
	var resps []rpcResponse
	for _, e := range elems {
		var probe struct {
			JSONRPC string     `json:"jsonrpc"`
			Method  string     `json:"method"`
			Params  rpcMessage `json:"params"`
			ID      *json.RawMessage
		}
		if err := json.Unmarshal(e, &probe); err != nil {
			return err
		}
		if probe.JSONRPC != "2.0" {
			return errors.New(`no "jsonrpc":"2.0"`)
		}
		if probe.Method == "incoming.message" {
			if probe.ID != nil {
				return errors.New("incoming.message with an id")
			}
			if !put(c.msgs, probe.Params, quit) {
				return errQuit
			}
			continue
		}
		var r rpcResponse
		if err := json.Unmarshal(e, &r); err != nil {
			return err
		}
		resps = append(resps, r)
	}
	if resps != nil {
		if len(elems) != len(resps) {
			return errors.New("responses and messages in one frame")
		}
		if !put(c.resps, resps, quit) {
			return errQuit
		}
	}
	return nil
}

func (c *rpcClient) send(t *testing.T, text string) {
	t.Helper()
	if err := c.write(text); err != nil {
		t.Fatal(err)
	}
}

func (c *rpcClient) write(text string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return wsutil.WriteClientText(c.conn, []byte(text))
}

// answer waits for the next response frame.
func (c *rpcClient) answer(t *testing.T) []rpcResponse {
	t.Helper()
	select {
	case r := <-c.resps:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no JSON-RPC response within 10 s")
	}
	return nil
}

// call sends one request with numeric id 1 and returns its response.
func (c *rpcClient) call(t *testing.T, method, params string) rpcResponse {
	t.Helper()
	c.send(t, `{"jsonrpc":"2.0","method":"`+method+`","params":`+params+`,"id":1}`)
	r := c.answer(t)
	if len(r) != 1 || string(r[0].ID) != "1" {
		t.Fatalf("%s: answer %+v", method, r)
	}
	return r[0]
}

func (c *rpcClient) next(t *testing.T) rpcMessage {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no incoming.message within 10 s")
	}
	return rpcMessage{}
}

// sentinel is published after everything a test expects, to show that
// nothing else came: a connection gets its messages in publish order, so a
// stray or duplicate copy of an earlier message would arrive before it.
// Checking only what has already arrived would miss a copy still in flight.
const sentinel = `{"module_id":"test","command":"sentinel","params":{}}`

// sentinelToUsers publishes the sentinel to users through the backend API.
func (ts *testServer) sentinelToUsers(t *testing.T, users ...int64) {
	t.Helper()
	list := make([]string, len(users))
	for i, u := range users {
		list[i] = strconv.FormatInt(u, 10)
	}
	ts.apiPublish(t, `{"userList":[`+strings.Join(list, ",")+`],"body":`+sentinel+`}`)
}

// nothingElse requires the next message to be the sentinel.
func (c *rpcClient) nothingElse(t *testing.T) {
	t.Helper()
	if m := c.next(t); string(m.Body) != sentinel {
		t.Fatalf("unexpected message %+v before the sentinel", m)
	}
}

func (c *rpcClient) waitClosed(t *testing.T) wsutil.ClosedError {
	t.Helper()
	return awaitClose(t, c.closed, c.failed)
}

// postAPI posts a backend JSON-RPC body, signed unless sig is given.
func (ts *testServer) postAPI(t *testing.T, body string, sig *string) (int, string, http.Header) {
	t.Helper()
	s := hex.EncodeToString(ts.signer.Sign([]byte(body)))
	if sig != nil {
		s = *sig
	}
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/api/?hostId="+testTenant+"&signature="+url.QueryEscape(s)+"&hostname=portal.test", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), resp.Header
}

// apiPublish posts one PHP-style publish notification and checks the answer.
func (ts *testServer) apiPublish(t *testing.T, params string) {
	t.Helper()
	code, body, _ := ts.postAPI(t, `[{"jsonrpc":"2.0","method":"publish","params":`+params+`}]`, nil)
	if code != http.StatusOK || body != `[{"jsonrpc":"2.0","id":null,"result":true}]` {
		t.Fatalf("api publish: %d %s", code, body)
	}
}

// waitUser waits until user has n local connections through its channel.
func (ts *testServer) waitUser(t *testing.T, user int64, n int) {
	t.Helper()
	ts.waitSubscribers(t, channel.User(testTenant, user), n)
}
