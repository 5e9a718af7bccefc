package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/server"
)

const healthcheckHelpHead = `Usage: pushpull healthcheck [flags]

Asks the server's /readyz (or another URL) once and exits 0 when it answers
200, 1 otherwise with one line saying why. It exists for container
HEALTHCHECKs: the image has no shell, curl or wget, only this binary.

Without --url it asks /readyz on the trusted listener, at the address the
server recorded in its data dir when it started, else the one the
configuration gives (--internal-addr): that works whatever --addr is and
whether or not it serves TLS. The data dir and config file are found as for
serve (flags, PUSHPULL_*).

Flags:
`

const healthcheckHelpTail = `
Examples:
  pushpull healthcheck                                   # ready: exit 0
  pushpull healthcheck --data-dir /var/lib/pushpull       # the server of that data dir
  pushpull healthcheck --url http://127.0.0.1:8080/healthz   # live only
  HEALTHCHECK CMD ["/pushpull", "healthcheck"]          # in a Dockerfile
`

// maxHealthLine bounds the part of a failing answer's body that is shown:
// the server says "draining" or why Redis is unreachable in one short line.
const maxHealthLine = 200

func (r *runner) healthcheck(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	url := fs.String("url", "", "the URL to ask (default: /readyz of the trusted listener)")
	fs.String("data-dir", "", "the server's data `DIR`, where it records its trusted listener's address (env PUSHPULL_DATA_DIR; default ./data)")
	fs.String(config.ConfigFlag, "", "the server's JSON config `FILE` (env PUSHPULL_CONFIG)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	writeHelp := func(w io.Writer) {
		_, _ = io.WriteString(w, healthcheckHelpHead)
		writeFlags(w, fs)
		_, _ = io.WriteString(w, healthcheckHelpTail)
	}
	if code, ok := r.parseFlags(fs, writeHelp, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return r.usageError("healthcheck", "takes no arguments, got %q", fs.Arg(0))
	}
	if *timeout <= 0 {
		return r.usageError("healthcheck", "--timeout must be positive")
	}
	target, client := *url, r.httpClient
	if target == "" {
		cfg, err := loadLocation(fs, r.getenv, r.readFile)
		if err != nil {
			return r.usageError("healthcheck", "%v", err)
		}
		base, err := server.InternalURL(cfg)
		if err != nil {
			return r.failure("healthcheck", err)
		}
		target = base + "/readyz"
		if client, err = r.statusClient(cfg, *timeout); err != nil {
			return r.failure("healthcheck", err)
		}
	}
	if err := r.checkHealth(ctx, client, target, *timeout); err != nil {
		return r.failure("healthcheck", err)
	}
	return exitOK
}

func (r *runner) checkHealth(ctx context.Context, client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within %s", url, timeout)
		}
		return err // already names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxHealthLine)) // the status alone is enough
	msg := fmt.Sprintf("GET %s: %s", url, resp.Status)
	if line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n"); line != "" {
		msg += ": " + line
	}
	return errors.New(msg)
}
