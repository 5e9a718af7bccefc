package pullclient

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ErrRefused is matched (errors.Is) by the error of a server that refused
// the channels or the token: close code 4010, or a long poll's 400 with
// the body "4010: Wrong Channel Id.".
var ErrRefused = errors.New("server refused the channels")

// wrongChannelID is the push server's code for channels or a token it does
// not accept (docs/protocol.md, "Errors").
const wrongChannelID = 4010

// RefusedError is the server's refusal of the channels or token, with the
// reason it gave.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string        { return fmt.Sprintf("%v (%s)", ErrRefused, e.Reason) }
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// CloseError is a WebSocket closed by the server with a close frame.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = strconv.Itoa(e.Code)
	}
	return fmt.Sprintf("server closed the connection (%s)", reason)
}

// StatusError is an HTTP answer that is not what the protocol expects: a
// long poll answered neither 200 nor 304, or a WebSocket handshake answered
// without an upgrade.
type StatusError struct {
	Status int
	Body   string // trimmed, at most maxShownBody bytes
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// maxShownBody bounds the part of an error answer kept for the message.
const maxShownBody = 512

// statusError is the error for an unexpected HTTP answer; the push
// server's 4010 body is a refusal.
func statusError(status int, body []byte) error {
	text := strings.TrimSpace(string(body))
	if len(text) > maxShownBody {
		text = text[:maxShownBody]
	}
	if strings.HasPrefix(text, strconv.Itoa(wrongChannelID)+":") {
		return &RefusedError{Reason: text}
	}
	return &StatusError{Status: status, Body: text}
}

// closeError is the error for a server's close frame.
func closeError(code int, reason string) error {
	if code == wrongChannelID {
		if reason == "" {
			reason = strconv.Itoa(code)
		}
		return &RefusedError{Reason: reason}
	}
	return &CloseError{Code: code, Reason: reason}
}

// permanent reports whether reconnecting with the same config cannot help:
// a refusal, another of the server's 4xxx codes except the transient ones
// (4011, history unavailable; 4029, evicted by a newer connection), or an
// HTTP 4xx other than 429.
func permanent(err error) bool {
	var ce *CloseError
	var se *StatusError
	switch {
	case errors.Is(err, ErrRefused):
		return true
	case errors.As(err, &ce):
		return ce.Code >= 4000 && ce.Code < 5000 && ce.Code != 4011 && ce.Code != 4029
	case errors.As(err, &se):
		return se.Status >= 400 && se.Status < 500 && se.Status != http.StatusTooManyRequests
	}
	return false
}

// handlerError is an error returned by the caller's event function; it
// ends the client.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }
