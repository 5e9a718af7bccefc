package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/pkg/pullclient"
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
	var wireFormat pullclient.Format
	switch *format {
	case "text":
		wireFormat = pullclient.FormatText
	case "json":
		wireFormat = pullclient.FormatJSON
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
		if c == "" || strings.ContainsAny(c, " \t\n") || slices.Contains(strings.Split(c, "/"), "") {
			return r.usageError("subscribe", "invalid SIGNED_CHANNEL %q", c)
		}
	}
	u, err := subscribeURL(*base, *longPoll)
	if err != nil {
		return r.usageError("subscribe", "%v", err)
	}

	var ids []string // an argument may hold several, joined with "/" as on the wire
	for _, c := range channels {
		ids = append(ids, strings.Split(c, "/")...)
	}
	cfg := pullclient.Config{
		WebSocketURL: u.String(),
		Channels:     ids,
		JWT:          *token,
		Version:      3,
		Format:       wireFormat,
		Transport:    pullclient.WebSocket,
		MID:          *mid,
		HTTPClient:   r.httpClient,
		Backoff:      pullclient.Backoff{Min: r.minBackoff, Max: r.maxBackoff, Jitter: r.jitter},
		// The official clients wait this long after server_restart, so
		// that a restart is not met by every client at once.
		ServerRestartDelay: r.restartDelay,
	}
	if *token != "" {
		cfg.Version, cfg.Channels = 5, nil
	}
	if *longPoll {
		cfg.Transport, cfg.WebSocketURL, cfg.LongPollURL = pullclient.LongPoll, "", u.String()
	}
	out := json.NewEncoder(r.stdout)
	// Bodies are the backend's JSON: print them as sent, not with <>&
	// turned into \u003c escapes.
	out.SetEscapeHTML(false)
	err = pullclient.Run(ctx, cfg, func(e pullclient.Event) error {
		switch e := e.(type) {
		case pullclient.Message:
			return printMessage(out, e)
		case pullclient.ServerRestart:
			return printMessage(out, e.Message)
		case pullclient.ConfigExpire:
			return printMessage(out, e.Message)
		case pullclient.ChannelExpire:
			return printMessage(out, e.Message)
		case pullclient.UserStatus:
			return printMessage(out, e.Message)
		case pullclient.Skipped:
			fmt.Fprintf(r.stderr, "pushpull subscribe: skipped what could not be decoded: %v\n", e.Err)
		case pullclient.Disconnected:
			if e.Restarting {
				fmt.Fprintf(r.stderr, "pushpull subscribe: the server is restarting (%v); reconnecting in %s\n", e.Err, e.Retry)
			} else {
				fmt.Fprintf(r.stderr, "pushpull subscribe: %v; reconnecting in %s\n", e.Err, e.Retry)
			}
		}
		return nil
	})
	if err != nil {
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

// printMessage prints m as one JSON line; a failure to write ends subscribe.
func printMessage(out *json.Encoder, m pullclient.Message) error {
	l := line{MID: m.MID, Channel: m.Channel, Text: m.Body, UserParams: m.UserParams, Dictionary: m.Dictionary}
	if !m.Created.IsZero() {
		l.Time = m.Created.UTC().Format(http.TimeFormat)
	}
	if err := out.Encode(l); err != nil {
		return fmt.Errorf("write standard output: %w", err)
	}
	return nil
}
