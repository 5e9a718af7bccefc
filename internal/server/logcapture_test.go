package server

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// logCapture is a server log that a test reads while the server writes it,
// and waits on for a line.
type logCapture struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	wake chan struct{} // closed and replaced on every write
}

func newLogCapture() *logCapture { return &logCapture{wake: make(chan struct{})} }

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.wake)
	l.wake = make(chan struct{})
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// logger is a debug-level text logger writing to l.
func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor waits until a line holding every one of parts has been written
// after the first from bytes, and returns that line.
func (l *logCapture) waitFor(t *testing.T, from int, parts ...string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		l.mu.Lock()
		text, wake := l.buf.String(), l.wake
		l.mu.Unlock()
		for _, line := range strings.Split(text[min(from, len(text)):], "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no log line with %q within 30 s; log:\n%s", parts, text)
		}
	}
}

// len is the number of bytes written so far, for waitFor's from.
func (l *logCapture) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
