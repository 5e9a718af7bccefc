package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

const (
	// maxMessageSize bounds one WebSocket message or long-poll body: far
	// above what a server sends (1 MiB bodies, a few hundred replayed), low
	// enough that a broken peer cannot exhaust memory.
	maxMessageSize = 64 << 20
	// pollAbort is how long a long poll may take before it is abandoned and
	// issued again, as the official clients do (LONG_POLLING_TIMEOUT).
	pollAbort = 60 * time.Second
	// dialTimeout bounds connecting and the WebSocket handshake.
	dialTimeout = 10 * time.Second
	// wrongChannelCode is the close code (and 400 body prefix) with which the
	// server refuses a CHANNEL_ID list (docs/protocol.md, "Errors").
	wrongChannelCode = 4010
	// tooManyConnections (4029) evicts the oldest connection of a channel; the
	// official clients reconnect after it, and so does subscribe.
	tooManyConnections = 4029
)

const subscribeHelpHead = `Usage: pushpull subscribe [flags] SIGNED_CHANNEL...

Connects to the push server as a browser does and prints every message as one
JSON line on standard output:
  {"mid":"…","channel":"…","time":"…","text":{…}}

SIGNED_CHANNEL is a channel id with its signature, "id.signature" (or
"private:public.signature"), as pull.application.config.get hands them out.
With --token (the config's jwt) it connects with protocol version 5 instead,
answers the server's pings, and prints {"mid":"…","text":{…}} lines, with
"user_params" and "dictionary" when the message has them.
subscribe remembers the last message id and resumes from it when it
reconnects; --mid resumes from an earlier one. It runs until interrupted.
It fails (exit 1) if the first connection fails or the server refuses the
channels; later connection losses are retried with backoff. When the server
says server_restart (it is stopping), subscribe waits 15 s before it comes
back, as the official clients do, so that a restart is not met by every
client at once.

Flags:
`

const subscribeHelpTail = `
Examples:
  pushpull subscribe 0123456789abcdef0123456789abcdef.5f2ab6c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6
  pushpull subscribe --long-poll --mid 17000000000000000000000042 ID.SIGNATURE
  pushpull subscribe --url wss://push.example.com/bitrix/subws/ ID.SIGNATURE | jq .text.command
  pushpull subscribe --token "$(curl -s "$REST/pull.application.config.get?auth=$TOKEN" | jq -r .result.jwt)"
`

// serverRestartDelay is how long the official clients wait before they
// reconnect after the server_restart command (docs/protocol.md, "System
// commands": 15 s).
const serverRestartDelay = 15 * time.Second

// fatalError is an error that reconnecting cannot fix.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func (r *runner) subscribe(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("subscribe", flag.ContinueOnError)
	base := fs.String("url", "ws://127.0.0.1:8080/sub/",
		"the subscribe `URL`: ws(s) or http(s), either works in both modes; with no path, /sub/")
	mid := fs.String("mid", "", "resume after this message id (`MID`, 26 digits)")
	format := fs.String("format", "text",
		"the wire `FORMAT` to ask for: text (#!NGINXNMS!# frames) or json (format=json arrays)")
	longPoll := fs.Bool("long-poll", false, "use long polling instead of a WebSocket")
	token := fs.String("token", "",
		"connect with protocol version 5 (JSON-RPC) and this connection `JWT` (config.get's jwt) instead of SIGNED_CHANNELs")
	writeHelp := func(w io.Writer) {
		_, _ = io.WriteString(w, subscribeHelpHead)
		writeFlags(w, fs)
		_, _ = io.WriteString(w, subscribeHelpTail)
	}
	if code, ok := r.parseFlags(fs, writeHelp, args); !ok {
		return code
	}
	if *mid != "" {
		if _, err := message.ParseID(*mid); err != nil {
			return r.usageError("subscribe", "invalid --mid %q: want the 26 digits of a message id", *mid)
		}
	}
	var parse func([]byte) ([]wire.TextFrame, error)
	switch *format {
	case "text":
		parse = wire.ParseTextFrames
	case "json":
		parse = wire.ParseJSONArray
	default:
		return r.usageError("subscribe", "invalid --format %q: want text or json", *format)
	}
	channels := fs.Args()
	if *token != "" {
		if len(channels) > 0 || *format != "text" {
			return r.usageError("subscribe", "--token replaces SIGNED_CHANNELs and --format: give neither")
		}
	} else if len(channels) == 0 {
		return r.usageError("subscribe", "want at least one SIGNED_CHANNEL")
	}
	if err := checkNoFlags(channels); err != nil {
		return r.usageError("subscribe", "%v", err)
	}
	for _, c := range channels {
		if c == "" || strings.ContainsAny(c, " \t\n") {
			return r.usageError("subscribe", "invalid SIGNED_CHANNEL %q", c)
		}
	}
	u, err := subscribeURL(*base, *longPoll)
	if err != nil {
		return r.usageError("subscribe", "%v", err)
	}

	s := &subscriber{
		runner:   r,
		url:      u,
		channels: strings.Join(channels, "/"),
		json:     *format == "json",
		token:    *token,
		parse:    parse,
		mid:      *mid,
		out:      json.NewEncoder(r.stdout),
	}
	// Bodies are the backend's JSON: print them as sent, not with <>&
	// turned into \u003c escapes.
	s.out.SetEscapeHTML(false)
	session := s.webSocket
	if *longPoll {
		session = s.poll
	}
	if err := s.run(ctx, session); err != nil {
		return r.failure("subscribe", err)
	}
	return exitOK
}

// subscribeURL checks the --url and gives it the scheme of the chosen mode,
// so that one URL can be tried both ways.
func subscribeURL(base string, longPoll bool) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid --url %q: want a ws, wss, http or https URL, like ws://127.0.0.1:8080/sub/", base)
	}
	scheme := map[bool]map[string]string{
		false: {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"},
		true:  {"ws": "http", "wss": "https", "http": "http", "https": "https"},
	}[longPoll][u.Scheme]
	if scheme == "" {
		return nil, fmt.Errorf("invalid --url %q: want a ws, wss, http or https URL, like ws://127.0.0.1:8080/sub/", base)
	}
	u.Scheme = scheme
	if u.Path == "" || u.Path == "/" {
		u.Path = "/sub/"
	}
	return u, nil
}

// subscriber is one run of `pushpull subscribe`.
type subscriber struct {
	*runner
	url      *url.URL
	channels string // CHANNEL_ID, the signed channels joined with "/"
	json     bool   // ask for format=json
	token    string // protocol version 5: the connection token
	parse    func([]byte) ([]wire.TextFrame, error)
	mid      string // the last message id seen, sent as mid on (re)connect
	out      *json.Encoder
	// restarting is set by a server_restart command: the next reconnect
	// waits restartDelay instead of the backoff.
	restarting bool
}

// line is what subscribe prints for a message. Version 5 messages name no
// channel or time, and may carry the user's params and a dictionary, which
// the official clients merge into text.params.
type line struct {
	MID        string          `json:"mid"`
	Channel    string          `json:"channel,omitempty"`
	Time       string          `json:"time,omitempty"`
	Text       json.RawMessage `json:"text"`
	UserParams json.RawMessage `json:"user_params,omitempty"`
	Dictionary json.RawMessage `json:"dictionary,omitempty"`
}

// run calls session until ctx is cancelled or an error cannot be helped by
// reconnecting. A first session that never connected is such an error: a
// wrong URL should fail at once, not retry forever in silence.
func (s *subscriber) run(ctx context.Context, session func(context.Context) (bool, error)) error {
	backoff := s.minBackoff
	everConnected := false
	for {
		connected, err := session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) || (!connected && !everConnected) {
			return err
		}
		if connected {
			everConnected = true
			backoff = s.minBackoff
		}
		wait := backoff
		if s.restarting {
			s.restarting = false
			wait = s.restartDelay
			fmt.Fprintf(s.stderr, "pushpull subscribe: the server is restarting (%v); reconnecting in %s\n", err, wait)
		} else {
			fmt.Fprintf(s.stderr, "pushpull subscribe: %v; reconnecting in %s\n", err, wait)
			backoff = min(2*backoff, s.maxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// requestURL is the subscribe URL with the query the official clients send,
// url-encoded as they encode it.
func (s *subscriber) requestURL() string {
	u := *s.url
	q := u.Query()
	if s.token != "" {
		q.Set("token", s.token)
		q.Set("jsonRpc", "true")
	} else {
		q.Set("CHANNEL_ID", s.channels)
	}
	if s.json {
		q.Set("format", "json")
	}
	if s.mid != "" {
		q.Set("mid", s.mid)
	} else {
		q.Del("mid")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// deliver prints the messages of one WebSocket message or poll answer and
// remembers the last mid. A batch that does not parse is reported and
// skipped, as the official clients skip it.
func (s *subscriber) deliver(data []byte) error {
	if s.token != "" {
		return s.deliverRPC(data)
	}
	frames, perr := s.parse(data)
	for _, f := range frames {
		if err := s.out.Encode(line{MID: f.MID, Channel: f.Channel, Time: f.Time, Text: f.Text}); err != nil {
			return &fatalError{fmt.Errorf("write standard output: %w", err)}
		}
		if f.MID != "" {
			s.mid = f.MID
		}
		s.noteCommand(f.Text)
	}
	if perr != nil {
		fmt.Fprintf(s.stderr, "pushpull subscribe: skipped what could not be decoded: %v\n", perr)
	}
	return nil
}

// deliverRPC is deliver for version 5: incoming.message notifications.
func (s *subscriber) deliverRPC(data []byte) error {
	msgs, perr := wire.ParseIncomingMessages(data)
	for _, m := range msgs {
		if err := s.out.Encode(line{MID: m.MID, Text: m.Body, UserParams: m.UserParams, Dictionary: m.Dictionary}); err != nil {
			return &fatalError{fmt.Errorf("write standard output: %w", err)}
		}
		s.mid = m.MID
		s.noteCommand(m.Body)
	}
	if perr != nil {
		fmt.Fprintf(s.stderr, "pushpull subscribe: skipped what could not be decoded: %v\n", perr)
	}
	return nil
}

// noteCommand looks at a message for the system commands subscribe obeys:
// server_restart, after which it waits restartDelay to reconnect.
func (s *subscriber) noteCommand(text []byte) {
	var cmd struct {
		ModuleID string `json:"module_id"`
		Command  string `json:"command"`
	}
	if json.Unmarshal(text, &cmd) == nil && cmd.ModuleID == "pull" && cmd.Command == "server_restart" {
		s.restarting = true
	}
}

// refused is the error for a server that rejects the channels: reconnecting
// with the same ones cannot help, so it is fatal.
func refused(reason string) error {
	return &fatalError{fmt.Errorf("server refused the channels (%s)", reason)}
}

// webSocket runs one WebSocket connection until it ends. connected reports
// whether the handshake succeeded.
func (s *subscriber) webSocket(ctx context.Context) (connected bool, err error) {
	target := s.requestURL()
	var status int
	var statusBody []byte
	dialer := ws.Dialer{
		Timeout: dialTimeout,
		// A server that checks channels before the upgrade (Push server
		// 1.0) answers 400; keep its body to tell the user why.
		OnStatusError: func(code int, _ []byte, resp io.Reader) {
			status = code
			if res, err := http.ReadResponse(bufio.NewReader(resp), nil); err == nil {
				statusBody, _ = io.ReadAll(io.LimitReader(res.Body, maxShownBody))
				res.Body.Close()
			}
		},
	}
	conn, br, _, err := dialer.Dial(ctx, target)
	if err != nil {
		if status != 0 {
			return false, httpError(status, statusBody)
		}
		return false, fmt.Errorf("connect to %s: %w", s.url.Redacted(), err)
	}
	defer conn.Close()
	var src io.Reader = conn
	if br != nil { // frames that arrived with the handshake are buffered here
		src = br
		defer ws.PutReader(br)
	}
	// Reads block in the network; on cancellation, an expired deadline wakes
	// the read below, which then says goodbye from this goroutine, the only
	// one that writes to conn.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()

	control := wsutil.ControlFrameHandler(conn, ws.StateClientSide)
	rd := &wsutil.Reader{
		Source:         src,
		State:          ws.StateClientSide,
		CheckUTF8:      true,
		MaxMessageSize: maxMessageSize,
		OnIntermediate: control,
	}
	for {
		hdr, err := rd.NextFrame()
		if err == nil && hdr.OpCode.IsControl() {
			err = control(hdr, rd) // answers pings, echoes a close
			if err == nil {
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				closeNormally(conn)
				return true, ctx.Err()
			}
			var closed wsutil.ClosedError
			if errors.As(err, &closed) {
				return true, closeError(closed)
			}
			return true, fmt.Errorf("connection lost: %w", err)
		}
		if hdr.OpCode != ws.OpText {
			// Binary frames are protobuf, which subscribe does not ask for.
			if err := rd.Discard(); err != nil {
				return true, fmt.Errorf("connection lost: %w", err)
			}
			continue
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			if ctx.Err() != nil {
				closeNormally(conn)
				return true, ctx.Err()
			}
			return true, fmt.Errorf("connection lost: %w", err)
		}
		if s.token != "" && string(data) == "ping" {
			// Version 5 servers ping with text and drop who does not answer.
			_ = conn.SetWriteDeadline(time.Now().Add(dialTimeout))
			err := wsutil.WriteClientText(conn, []byte("pong"))
			_ = conn.SetWriteDeadline(time.Time{})
			if err != nil {
				return true, fmt.Errorf("connection lost: %w", err)
			}
			continue
		}
		if err := s.deliver(data); err != nil {
			return true, err
		}
	}
}

// closeNormally sends a 1000 close frame, briefly: the connection is being
// dropped whether or not the server reads it.
func closeNormally(conn net.Conn) {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
}

// closeError turns the server's close frame into the error to report; codes
// 4000-4999 are the server's refusals (docs/protocol.md, "Errors"), fatal
// except eviction.
func closeError(c wsutil.ClosedError) error {
	reason := c.Reason
	if reason == "" {
		reason = strconv.Itoa(int(c.Code))
	}
	switch {
	case c.Code == wrongChannelCode:
		return refused(reason)
	case c.Code.IsPrivateSpec() && c.Code != tooManyConnections:
		return &fatalError{fmt.Errorf("server closed the connection (%s)", reason)}
	}
	return fmt.Errorf("server closed the connection (%s)", reason)
}

// httpError reports a status that is neither 200 nor 304 (nor 101).
func httpError(status int, body []byte) error {
	text := strings.TrimSpace(string(body))
	if strings.HasPrefix(text, strconv.Itoa(wrongChannelCode)+":") {
		return refused(text)
	}
	msg := fmt.Sprintf("server answered %d %s", status, http.StatusText(status))
	if text != "" {
		msg += ": " + text
	}
	if status >= 500 { // the server's trouble, maybe passing: retry
		return errors.New(msg)
	}
	return &fatalError{errors.New(msg)}
}

// poll long-polls until an error: 200 brings messages, 304 a Last-Message-Id
// to continue from, and either way the next poll follows at once, as the
// official clients do. connected reports whether any poll was answered.
func (s *subscriber) poll(ctx context.Context) (connected bool, err error) {
	for {
		status, body, header, err := s.pollOnce(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return connected, ctx.Err()
			}
			return connected, err
		}
		switch status {
		case http.StatusOK:
			connected = true
			if err := s.deliver(body); err != nil {
				return true, err
			}
		case http.StatusNotModified:
			connected = true
			if id := header.Get("Last-Message-Id"); id != "" {
				s.mid = id
			}
		default:
			return connected, httpError(status, body)
		}
	}
}

// pollOnce issues one poll; a poll the server held past pollAbort is
// answered as a 304 without a Last-Message-Id, so that polling goes on.
func (s *subscriber) pollOnce(ctx context.Context) (int, []byte, http.Header, error) {
	pctx, cancel := context.WithTimeout(ctx, pollAbort)
	defer cancel()
	target := s.requestURL()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, nil, nil, &fatalError{err}
	}
	resp, err := s.httpClient.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxMessageSize+1))
		if err == nil && len(body) > maxMessageSize {
			err = fmt.Errorf("answer larger than %d bytes", maxMessageSize)
		}
		if err == nil {
			return resp.StatusCode, body, resp.Header, nil
		}
	}
	if ctx.Err() == nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
		return http.StatusNotModified, nil, http.Header{}, nil
	}
	return 0, nil, nil, fmt.Errorf("poll %s: %w", s.url.Redacted(), err)
}
