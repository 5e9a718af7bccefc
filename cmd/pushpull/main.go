// Command pushpull is a push server compatible with Bitrix24 "Push & Pull",
// and the tools to talk to it. Run "pushpull help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pushpull/pushpull/internal/cli"
)

func main() {
	// The first SIGINT or SIGTERM cancels ctx, so that serve drains and
	// subscribe exits cleanly. Stopping the notification right then restores
	// the default handling, so that a second signal kills a stuck shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
