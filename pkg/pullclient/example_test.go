package pullclient_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/pkg/pullclient"
)

// exampleServer runs a pushpull server in this process for an example and
// returns its URL, a channel signed as pull.application.config.get would
// hand it out, a function that publishes to that channel as a backend
// does, and a function that stops the server. (A program would get the
// signed channel from its portal's config instead.)
func exampleServer() (baseURL, signed string, publish func(body string), stop func()) {
	dir, err := os.MkdirTemp("", "pullclient-example")
	if err != nil {
		log.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.SignatureKey = "example-key"
	cfg.InternalAddr = config.SameAddr
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, ln, nil) }()
	var id channel.ID
	_, _ = rand.Read(id[:])
	baseURL = "http://" + ln.Addr().String()
	signed = channel.NewSigner([]byte(cfg.SignatureKey), channel.SHA1).SignChannel(id)
	publish = func(body string) {
		resp, err := http.Post(baseURL+"/pub/?CHANNEL_ID="+id.String(), "application/json", strings.NewReader(body))
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
	}
	stop = func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}
	return baseURL, signed, publish, stop
}

// Dial connects, then events arrive on a channel until Close.
func Example() {
	base, signed, publish, stop := exampleServer()
	defer stop()

	c, err := pullclient.Dial(context.Background(), pullclient.Config{
		WebSocketURL: base + "/sub/", // http(s) URLs are taken as ws(s)
		Channels:     []string{signed},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	publish(`{"module_id":"chat","command":"message","params":{"text":"hello"}}`)
	for e := range c.Events() {
		switch e := e.(type) {
		case pullclient.Connected:
			fmt.Println("connected over", e.Transport)
		case pullclient.Message:
			fmt.Println(e.ModuleID, e.Command, string(e.Params))
			return
		}
	}
	// Output:
	// connected over websocket
	// chat message {"text":"hello"}
}

// Run is the blocking form: it calls a function for each event until its
// context ends. Here the client long-polls with protocol version 4
// (protobuf), and resumes after a message id: the server first replays
// what was published after it.
func ExampleRun() {
	base, signed, publish, stop := exampleServer()
	defer stop()
	publish(`{"module_id":"app","command":"first","params":{}}`)
	publish(`{"module_id":"app","command":"second","params":{}}`)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := 0
	err := pullclient.Run(ctx, pullclient.Config{
		LongPollURL: base + "/sub/",
		Channels:    []string{signed},
		Version:     4,
		Transport:   pullclient.LongPoll,
		MID:         "00000000000000000000000000", // everything stored
	}, func(e pullclient.Event) error {
		if m, ok := e.(pullclient.Message); ok {
			fmt.Println(m.Command, "from the backend:", m.Sender.Type == pullclient.SenderBackend)
			if seen++; seen == 2 {
				cancel()
			}
		}
		return nil
	})
	fmt.Println("Run returned", err)
	// Output:
	// first from the backend: true
	// second from the backend: true
	// Run returned <nil>
}

// ParseConfig reads the answer of pull.application.config.get; the config
// chooses the protocol (server.version), the URLs and the credentials.
func ExampleParseConfig() {
	answer := []byte(`{"result":{
		"server":{"version":5,"long_polling":"http://push.example/sub/","long_pooling_secure":"https://push.example/sub/",
			"websocket_enabled":true,"websocket":"ws://push.example/sub/","websocket_secure":"wss://push.example/sub/"},
		"channels":{"private":{"id":"aaa.sig1"},"shared":{"id":"bbb.sig2"}},
		"jwt":"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.c2ln","exp":1775052318},
		"time":{"start":1775009118.1}}`)
	cfg, err := pullclient.ParseConfig(answer, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Version, cfg.WebSocketURL, cfg.LongPollURL, cfg.JWT != "", cfg.Channels)

	// Below version 5 there is no token: the client subscribes to the
	// signed channels, private first.
	cfg, _ = pullclient.ParseConfig([]byte(`{"server":{"version":4,"websocket_enabled":false,
		"long_polling":"http://push.example/sub/"},"channels":{"shared":{"id":"bbb.sig2"},"private":{"id":"aaa.sig1"}}}`), false)
	fmt.Println(cfg.Version, cfg.Transport, cfg.Channels)
	// Output:
	// 5 wss://push.example/sub/ https://push.example/sub/ true []
	// 4 long polling [aaa.sig1 bbb.sig2]
}
