package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// httpConn is a minimal HTTP/1.1 keep-alive client on one connection, for
// the publishers and the long-polling subscribers. It writes each request in
// one write and reads the answer from a reused buffer, so that the load
// generator spends its CPU on the server's answers rather than on net/http's
// per-request machinery. It is not safe for concurrent use.
type httpConn struct {
	addr        string // host:port to dial
	host        string // Host header
	dialTimeout time.Duration
	local       *net.TCPAddr // the address to dial from; nil: the system's choice

	conn   net.Conn
	stop   func() bool // unregisters the close-on-cancel hook
	br     *bufio.Reader
	req    []byte
	body   []byte
	header [midLen]byte // Last-Message-Id of the last answer
	hdrLen int
}

// maxBody bounds an answer body: long polls replay a few hundred frames.
const maxBody = 64 << 20

// errTooLarge reports an answer over maxBody.
var errTooLarge = errors.New("answer body too large")

// answer is one response; body is valid until the next request.
type answer struct {
	status int
	body   []byte
	// lastMessageID is the Last-Message-Id header; valid until the next request.
	lastMessageID []byte
}

func (c *httpConn) connect(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	d := net.Dialer{Timeout: c.dialTimeout}
	if c.local != nil {
		d.LocalAddr = c.local
	}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	c.conn = conn
	// Cancellation closes the socket, which wakes any read or write.
	c.stop = context.AfterFunc(ctx, func() { _ = conn.Close() })
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 4096)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

// close drops the connection; the next request dials again.
func (c *httpConn) close() {
	if c.conn == nil {
		return
	}
	c.stop()
	_ = c.conn.Close()
	c.conn = nil
}

// do sends one request and reads its answer. timeout (0: none) bounds the
// whole exchange. On any error the connection is closed.
func (c *httpConn) do(ctx context.Context, method string, target, body []byte, timeout time.Duration) (answer, error) {
	if err := c.connect(ctx); err != nil {
		return answer{}, err
	}
	a, keep, err := c.exchange(method, target, body, timeout)
	if err != nil {
		c.close()
		if ctx.Err() != nil {
			return answer{}, ctx.Err()
		}
		return answer{}, err
	}
	if !keep {
		c.close()
	}
	return a, nil
}

func (c *httpConn) exchange(method string, target, body []byte, timeout time.Duration) (a answer, keep bool, err error) {
	if timeout > 0 {
		if err := c.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
			return a, false, err
		}
	}
	req := append(c.req[:0], method...)
	req = append(req, ' ')
	req = append(req, target...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, c.host...)
	req = append(req, "\r\nUser-Agent: pushpull-bench\r\n"...)
	if body != nil {
		req = append(req, "Content-Type: application/json\r\nContent-Length: "...)
		req = strconv.AppendInt(req, int64(len(body)), 10)
		req = append(req, "\r\n"...)
	}
	req = append(req, "\r\n"...)
	req = append(req, body...)
	c.req = req
	if _, err := c.conn.Write(req); err != nil {
		return a, false, fmt.Errorf("write request: %w", err)
	}
	return c.readAnswer()
}

func (c *httpConn) readAnswer() (a answer, keep bool, err error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return a, false, fmt.Errorf("read status: %w", err)
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return a, false, fmt.Errorf("malformed status line %q", bytes.TrimSpace(line))
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return a, false, fmt.Errorf("malformed status line %q", bytes.TrimSpace(line))
	}
	a.status = status
	keep = line[7] == '1' // HTTP/1.1 keeps the connection by default
	length := int64(-1)
	chunked := false
	c.hdrLen = 0
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return a, false, fmt.Errorf("read headers: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return a, false, fmt.Errorf("malformed header %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return a, false, fmt.Errorf("malformed Content-Length %q", value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		case bytes.EqualFold(name, []byte("Last-Message-Id")):
			c.hdrLen = copy(c.header[:], value)
		}
	}
	a.lastMessageID = c.header[:c.hdrLen]
	switch {
	case status == 204 || status == 304 || status/100 == 1:
		a.body = c.body[:0]
	case chunked:
		a.body, err = c.readChunked()
	case length >= 0:
		if length > maxBody {
			return a, false, errTooLarge
		}
		if int64(cap(c.body)) < length {
			c.body = make([]byte, length)
		}
		a.body = c.body[:length]
		_, err = io.ReadFull(c.br, a.body)
	default: // the body runs to the end of the connection
		keep = false
		buf := bytes.NewBuffer(c.body[:0])
		_, err = buf.ReadFrom(io.LimitReader(c.br, maxBody))
		a.body = buf.Bytes()
	}
	if err != nil {
		return a, false, fmt.Errorf("read body: %w", err)
	}
	return a, keep, nil
}

func (c *httpConn) readChunked() ([]byte, error) {
	body := c.body[:0]
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		sizeText, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		size, err := strconv.ParseInt(string(sizeText), 16, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("malformed chunk size %q", sizeText)
		}
		if size == 0 {
			break
		}
		if int64(len(body))+size > maxBody {
			return nil, errTooLarge
		}
		n := len(body)
		body = append(body, make([]byte, size)...)
		if _, err := io.ReadFull(c.br, body[n:]); err != nil {
			return nil, err
		}
		if _, err := c.br.Discard(2); err != nil { // the chunk's CRLF
			return nil, err
		}
	}
	for { // trailers, up to the empty line
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	c.body = body
	return body, nil
}
