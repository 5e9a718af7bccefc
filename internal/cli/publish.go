package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// maxShownBody caps how much of an error response publish prints.
const maxShownBody = 4 << 10

const publishHelpHead = `Usage: pushpull publish [flags] CHANNEL_ID... BODY|-

Publishes one message to channels the way the Bitrix PHP module does:
POST <url>/pub/?CHANNEL_ID=<id>/<id> with the body and, with --expiry, a
Message-Expiry header. /pub/ is a trusted route: the server serves it on its
internal listener (serve --internal-addr, 127.0.0.1:8895 by default), which is
the default --url; with "serve --internal-addr same" give --url the server's
--addr. It prints nothing when the server accepts the message.

CHANNEL_ID is a channel's id as the backend knows it (32 hex characters,
unsigned). BODY, the last argument, is the message as JSON, usually
{"module_id":…,"command":…,"params":{…}}; "-" reads it from standard input.
It is checked locally and sent compacted.

Flags:
`

const publishHelpTail = `
Examples:
  pushpull publish 0123456789abcdef0123456789abcdef '{"module_id":"test","command":"hello","params":{}}'
  pushpull publish --expiry 60 ID1 ID2 - < event.json
  pushpull publish --url http://10.0.0.5:8895/bitrix/pub/ ID '{"module_id":"im","command":"ping","params":{}}'
  PUSHPULL_TENANT_KEY=… pushpull publish --client-id 0123456789abcdef0123456789abcdef ID '{…}'   # shared mode
`

func (r *runner) publish(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8895",
		"the `URL` of the server's trusted listener (serve --internal-addr); when it has no path, /pub/ is appended")
	expiry := fs.Int("expiry", 0,
		"keep the message in history this many `SECONDS` (0: deliver live only); default: the server's")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this `DURATION`")
	clientID := fs.String("client-id", "", "shared mode: publish as this portal (`ID`), signing the body with its key (--key, or env PUSHPULL_TENANT_KEY)")
	key := fs.String("key", "", "shared mode: the portal's security `KEY` (pushpull tenant add prints it)")
	algo := fs.String("algo", "sha1", "shared mode: the signature's hash, sha1 or sha256 (the server's --signature-algo)")
	writeHelp := func(w io.Writer) {
		_, _ = io.WriteString(w, publishHelpHead)
		writeFlags(w, fs)
		_, _ = io.WriteString(w, publishHelpTail)
	}
	if code, ok := r.parseFlags(fs, writeHelp, args); !ok {
		return code
	}
	expirySet := false
	fs.Visit(func(f *flag.Flag) { expirySet = expirySet || f.Name == "expiry" })
	if expirySet && *expiry < 0 {
		return r.usageError("publish", "invalid --expiry %d: want 0 or more seconds", *expiry)
	}
	if *timeout <= 0 {
		return r.usageError("publish", "invalid --timeout %s: want more than 0", *timeout)
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return r.usageError("publish", "want at least one CHANNEL_ID and then the BODY (or - to read it from standard input)")
	}
	ids, bodyArg := rest[:len(rest)-1], rest[len(rest)-1]
	if err := checkNoFlags(ids); err != nil {
		return r.usageError("publish", "%v", err)
	}
	target, err := publishURL(*base, ids)
	if err != nil {
		return r.usageError("publish", "%v", err)
	}
	body, err := r.readBody(bodyArg)
	if err != nil {
		return r.usageError("publish", "%v", err)
	}
	if *clientID != "" {
		if target, err = r.signForTenant(target, body, *clientID, *key, *algo); err != nil {
			return r.usageError("publish", "%v", err)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return r.failure("publish", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if expirySet {
		req.Header.Set("Message-Expiry", strconv.Itoa(*expiry))
	}
	resp, err := r.httpClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return r.failure("publish", fmt.Errorf("POST %s: no answer within %s", target, *timeout))
		}
		return r.failure("publish", err)
	}
	defer resp.Body.Close()
	shown, err := io.ReadAll(io.LimitReader(resp.Body, maxShownBody))
	if err != nil {
		return r.failure("publish", fmt.Errorf("POST %s: read the answer: %w", target, err))
	}
	if resp.StatusCode != http.StatusOK {
		msg := "server answered " + resp.Status
		if s := strings.TrimSpace(string(shown)); s != "" {
			msg += ": " + s
		}
		return r.failure("publish", errors.New(msg))
	}
	return exitOK
}

// publishURL builds the /pub/ request URL. The ids are joined with a literal
// "/", as the PHP module sends them, each escaped on its own.
func publishURL(base string, ids []string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("invalid --url %q: want an http or https URL, like http://127.0.0.1:8895", base)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/pub/"
	}
	var escaped []string
	for _, arg := range ids {
		// "a/b" as one argument is the CHANNEL_ID form; accept it too.
		for _, id := range strings.Split(arg, "/") {
			if id == "" {
				return "", fmt.Errorf("invalid CHANNEL_ID %q: empty channel id", arg)
			}
			escaped = append(escaped, url.QueryEscape(id))
		}
	}
	q := "CHANNEL_ID=" + strings.Join(escaped, "/")
	if u.RawQuery != "" {
		q = u.RawQuery + "&" + q
	}
	u.RawQuery = q
	return u.String(), nil
}

// readBody returns the message, compacted: the clients find frames with a
// regular expression that a raw line break inside would defeat, and the PHP
// module sends compact JSON too.
func (r *runner) readBody(arg string) ([]byte, error) {
	data := []byte(arg)
	from := "BODY"
	if arg == "-" {
		from = "standard input"
		var err error
		if data, err = io.ReadAll(r.stdin); err != nil {
			return nil, fmt.Errorf("read the body from standard input: %w", err)
		}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("the body from %s is empty: the server refuses empty messages", from)
	}
	// Unmarshal, unlike Compact, says where the syntax error is.
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("the body from %s is not JSON: %v (at byte %d)", from, err, syn.Offset)
		}
		return nil, fmt.Errorf("the body from %s is not JSON: %v", from, err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, data); err != nil {
		return nil, fmt.Errorf("compact the body from %s: %w", from, err)
	}
	return out.Bytes(), nil
}

// signForTenant adds a shared-mode portal's clientId and the signature of
// body, the HMAC with its key, to target.
func (r *runner) signForTenant(target string, body []byte, clientID, key, algoName string) (string, error) {
	if key == "" {
		key = r.getenv("PUSHPULL_TENANT_KEY")
	}
	if key == "" {
		return "", errors.New("--client-id needs the portal's --key (or PUSHPULL_TENANT_KEY)")
	}
	algo, err := channel.ParseAlgo(algoName)
	if err != nil {
		return "", fmt.Errorf("invalid --algo %q: want sha1 or sha256", algoName)
	}
	sig := hex.EncodeToString(channel.NewSigner([]byte(key), algo).Sign(body))
	return target + "&clientId=" + url.QueryEscape(clientID) + "&signature=" + sig, nil
}
