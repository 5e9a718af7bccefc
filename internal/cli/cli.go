// Package cli is the pushpull command line: it parses arguments, wires the
// parts together and turns outcomes into exit codes. main only hands it the
// process's arguments, streams and signals.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/pkg/pullclient"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed: server unreachable, refused, ...
	exitUsage   = 2 // the command line or the configuration is wrong
)

// Main runs the command line args (without the program name) and returns the
// process's exit code. ctx is cancelled to stop a long-running command (serve,
// subscribe) cleanly; env looks up environment variables, like os.Getenv.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	r := &runner{
		stdin:        os.Stdin,
		stdout:       stdout,
		stderr:       stderr,
		getenv:       env,
		readFile:     os.ReadFile,
		runServer:    server.Run,
		httpClient:   &http.Client{},
		minBackoff:   time.Second,
		maxBackoff:   30 * time.Second,
		jitter:       pullclient.DefaultBackoff().Jitter,
		restartDelay: serverRestartDelay,
	}
	return r.main(ctx, args)
}

// runner holds what the commands use from the outside world, so that tests
// can supply each part instead of the process's.
type runner struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	readFile       func(string) ([]byte, error)
	runServer      func(context.Context, config.Config, *slog.Logger) error
	httpClient     *http.Client
	// minBackoff and maxBackoff bound the wait before subscribe reconnects.
	minBackoff, maxBackoff time.Duration
	// jitter stretches each backoff by up to this part, so that clients cut
	// at once do not come back at once; tests set none, for exact waits.
	jitter float64
	// restartDelay is subscribe's wait after the server said server_restart.
	restartDelay time.Duration
}

// command is one subcommand. run handles its own --help.
type command struct {
	name    string
	summary string
	run     func(r *runner, ctx context.Context, args []string) int
}

func commands() []command {
	return []command{
		{"serve", "run the push server", (*runner).serve},
		{"publish", "publish a JSON message to channels through /pub/", (*runner).publish},
		{"subscribe", "print the messages of signed channels, one JSON line each", (*runner).subscribe},
		{"bench", "load a server with subscribers and publishes; report latency, loss, memory and CPU", (*runner).bench},
		{"app", "register and list REST applications in the registry", (*runner).app},
		{"user", "add or update users in the registry", (*runner).user},
		{"token", "issue and revoke OAuth tokens and authorization codes", (*runner).token},
		{"webhook", "create incoming webhooks", (*runner).webhook},
		{"tenant", "add, list and remove the portals of a shared-mode server", (*runner).tenant},
		{"healthcheck", "exit 0 when the server is ready (for container health checks)", (*runner).healthcheck},
		{"status", "print the running server's state: connections, rates, memory, cluster nodes, TLS", (*runner).status},
		{"version", "print the version", (*runner).version},
		{"help", "show help for a command", (*runner).help},
	}
}

func (r *runner) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		r.writeUsage(r.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		r.writeUsage(r.stdout)
		return exitOK
	case "-version", "--version":
		return r.version(ctx, nil)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(r, ctx, args[1:])
		}
	}
	fmt.Fprintf(r.stderr, "pushpull: unknown command %q\n\n", args[0])
	r.writeUsage(r.stderr)
	return exitUsage
}

func (r *runner) writeUsage(w io.Writer) {
	var b bytes.Buffer
	b.WriteString(`pushpull is a push server compatible with Bitrix24 "Push & Pull".

Usage:
  pushpull <command> [flags] [arguments]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Run "pushpull <command> --help" for a command's flags and examples.
`)
	_, _ = w.Write(b.Bytes()) // nothing useful to do if the terminal is gone
}

func (r *runner) help(ctx context.Context, args []string) int {
	switch {
	case len(args) == 0, len(args) == 1 && (args[0] == "help" || isHelpFlag(args[0])):
		r.writeUsage(r.stdout)
		return exitOK
	case len(args) > 1:
		fmt.Fprintf(r.stderr, "pushpull help: want one command, got %d arguments\n", len(args))
		return exitUsage
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(r, ctx, []string{"--help"})
		}
	}
	fmt.Fprintf(r.stderr, "pushpull help: unknown command %q\n\n", args[0])
	r.writeUsage(r.stderr)
	return exitUsage
}

func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

// parseFlags parses a command's flags. It returns ok=false when the command
// is done: help was printed (exitOK) or the flags were wrong (exitUsage).
func (r *runner) parseFlags(fs *flag.FlagSet, writeHelp func(io.Writer), args []string) (code int, ok bool) {
	fs.SetOutput(io.Discard) // errors and help are printed below, in our layout
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		writeHelp(r.stdout)
		return exitOK, false
	}
	if err != nil {
		fmt.Fprintf(r.stderr, "pushpull %s: %v\nRun \"pushpull %s --help\" for usage.\n", fs.Name(), config.FlagError(err), fs.Name())
		return exitUsage, false
	}
	return exitOK, true
}

// usageError reports a wrong argument of a command; it returns exitUsage.
func (r *runner) usageError(cmd string, format string, args ...any) int {
	fmt.Fprintf(r.stderr, "pushpull %s: %s\nRun \"pushpull %s --help\" for usage.\n", cmd, fmt.Sprintf(format, args...), cmd)
	return exitUsage
}

// failure reports an error of a command that ran; it returns exitFailure.
func (r *runner) failure(cmd string, err error) int {
	fmt.Fprintf(r.stderr, "pushpull %s: %v\n", cmd, err)
	return exitFailure
}

// writeFlags lists fs's flags in the layout config.WriteFlagHelp uses, with
// "--" because that is how the examples spell them.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
			arg = ""
		}
		line := "  --" + f.Name
		if arg != "" {
			line += " " + arg
		}
		fmt.Fprintf(w, "%s\n        %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// checkNoFlags refuses arguments that look like flags after the first
// positional argument: the flag package stops at the first one, so
// "subscribe ID --long-poll" would otherwise take "--long-poll" as a channel.
func checkNoFlags(args []string) error {
	for _, a := range args {
		if len(a) > 1 && strings.HasPrefix(a, "-") {
			return fmt.Errorf("flags go before the arguments: move %q to the front", a)
		}
	}
	return nil
}
