package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/pushpull/pushpull/internal/config"
)

const serveHelpHead = `Usage: pushpull serve [flags]

Runs the push server until it gets SIGINT or SIGTERM, then shuts down
gracefully. Clients are served on --addr; the trusted routes the backend
uses (/pub/, /api/, /server-stat/) only on --internal-addr, loopback by
default. Every flag can also be set by its PUSHPULL_* environment variable
or by its name as a key of the JSON --config file. Flags win over the
environment, which wins over the file. Durations are written like 40s or
1m30s, or as whole seconds. Lists are comma-separated (JSON arrays in the file).

Flags:
`

const serveHelpTail = `
Examples:
  pushpull serve                           # clients on :8080, backend (/pub/, /api/) on 127.0.0.1:8895
  pushpull serve --internal-addr same      # local development: everything on :8080
  pushpull serve --internal-addr 10.0.1.11:8895   # the backend publishes from another host
  pushpull serve --addr 127.0.0.1:9000 --signature-key "$KEY" --public-url https://push.example.com
  PUSHPULL_DATA_DIR=/var/lib/pushpull pushpull serve --config /etc/pushpull.json

  where /etc/pushpull.json is, for example:
  {"addr": ":8893", "signature-algo": "sha256", "poll-timeout": 40, "sub-paths": ["/bitrix/sub/", "/bitrix/subws/"]}
`

func writeServeHelp(w io.Writer) {
	_, _ = io.WriteString(w, serveHelpHead)
	_ = config.WriteFlagHelp(w)
	_, _ = io.WriteString(w, serveHelpTail)
}

// serve loads and checks the configuration, then runs the server until ctx
// is cancelled. Errors are one line, "pushpull serve: ...", like every
// command's: a bad command line or setting (named as the user wrote it)
// with exitUsage before anything starts, followed by the pointer to --help
// every command gives; a server that cannot start (a port in use) or stops
// with an error with exitFailure. The server's own log stays structured.
func (r *runner) serve(ctx context.Context, args []string) int {
	cfg, err := config.Load(args, r.getenv, r.readFile)
	if errors.Is(err, flag.ErrHelp) {
		writeServeHelp(r.stdout)
		return exitOK
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return r.usageError("serve", "%v", err)
	}
	log := slog.New(slog.NewTextHandler(r.stderr, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
	if err := r.runServer(ctx, cfg, log); err != nil {
		// errors.Join separates with new lines; keep it one line.
		fmt.Fprintf(r.stderr, "pushpull serve: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return exitFailure
	}
	return exitOK
}
