package pullclient

import (
	"context"
	"strings"
	"testing"
)

func TestSubscribeURL(t *testing.T) {
	chans := []string{"a.1", "p:q.2"}
	tests := []struct {
		version int
		format  Format
		jwt     string
		mid     string
		want    string
	}{
		{3, FormatText, "", "", "ws://h/sub/?CHANNEL_ID=a.1%2Fp%3Aq.2"},
		{3, FormatJSON, "", "17000000000000000000000001", "ws://h/sub/?CHANNEL_ID=a.1%2Fp%3Aq.2&format=json&mid=17000000000000000000000001"},
		{4, FormatJSON, "", "", "ws://h/sub/?CHANNEL_ID=a.1%2Fp%3Aq.2&binaryMode=true"},
		{5, FormatText, "x.y.z", "", "ws://h/sub/?jsonRpc=true&token=x.y.z"},
		{5, FormatText, "", "", "ws://h/sub/?CHANNEL_ID=a.1%2Fp%3Aq.2&jsonRpc=true"},
	}
	for _, tt := range tests {
		if got := SubscribeURL("ws://h/sub/", tt.version, tt.format, chans, tt.jwt, tt.mid); got != tt.want {
			t.Errorf("v%d %v %q %q:\n got %s\nwant %s", tt.version, tt.format, tt.jwt, tt.mid, got, tt.want)
		}
	}
}

// TestBadConfig: what cannot work is refused before anything connects.
func TestBadConfig(t *testing.T) {
	good := Config{WebSocketURL: "ws://h/sub/", Channels: []string{"a.b"}}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no channels", func(c *Config) { c.Channels = nil }, "neither channels nor a jwt"},
		{"empty channel", func(c *Config) { c.Channels = []string{""} }, `invalid channel id ""`},
		{"joined channels", func(c *Config) { c.Channels = []string{"a.b/c.d"} }, `invalid channel id "a.b/c.d"`},
		{"no url", func(c *Config) { c.WebSocketURL = "" }, "no server URL"},
		{"ftp url", func(c *Config) { c.WebSocketURL = "ftp://h/" }, `invalid server URL "ftp://h/"`},
		{"jwt below v5", func(c *Config) { c.JWT, c.Version = "x", 4 }, "needs protocol version 5, not 4"},
		{"bad mid", func(c *Config) { c.MID = "123" }, `invalid mid "123"`},
		{"bad backoff", func(c *Config) { c.Backoff = Backoff{Min: 2, Max: 1} }, "invalid backoff"},
		{"bad transport", func(c *Config) { c.Transport = 7 }, "unknown transport 7"},
	}
	for _, tt := range tests {
		c := good
		tt.edit(&c)
		err := Run(context.Background(), c, func(Event) error { t.Errorf("%s: an event", tt.name); return nil })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Config{LongPollURL: "wss://h", JWT: "t"}.normalized()
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 5 || c.WebSocketURL != "wss://h/sub/" || c.LongPollURL != "https://h/sub/" ||
		c.Backoff != DefaultBackoff() || c.ServerRestartDelay != defaultRestartDelay || c.HTTPClient == nil {
		t.Errorf("defaults %+v", c)
	}
}

func TestJitter(t *testing.T) {
	for range 100 {
		if d := jittered(100, 0.2); d < 100 || d > 120 {
			t.Fatalf("jittered(100, 0.2) = %d", d)
		}
	}
	if d := jittered(100, 0); d != 100 {
		t.Errorf("no jitter: %d", d)
	}
}

// TestTyped: the commands the official clients act on become their own
// events; anything else, or a command with unreadable params, stays a
// Message.
func TestTyped(t *testing.T) {
	msg := func(body string) Message {
		var m Message
		m.fillBody([]byte(body))
		return m
	}
	if _, ok := typed(msg(`{"module_id":"PULL","command":"SERVER_RESTART","params":{}}`)).(ServerRestart); !ok {
		t.Error("server_restart")
	}
	if _, ok := typed(msg(`{"module_id":"pull","command":"config_expire","params":[]}`)).(ConfigExpire); !ok {
		t.Error("config_expire")
	}
	ce, ok := typed(msg(`{"module_id":"pull","command":"channel_expire","params":{"action":"get_config","channel":{"id":"a.b","type":"private"}}}`)).(ChannelExpire)
	if !ok || ce.Action != "get_config" || ce.Channel != (ExpiredChannel{ID: "a.b", Type: "private"}) || ce.NewChannel != nil {
		t.Errorf("channel_expire %+v", ce)
	}
	us, ok := typed(msg(`{"module_id":"online","command":"userStatusChange","params":{"user_id":7,"online":true}}`)).(UserStatus)
	if !ok || us.UserID != 7 || !us.Online {
		t.Errorf("userStatusChange %+v", us)
	}
	for _, body := range []string{
		`{"module_id":"online","command":"userStatusChange","params":{"user_id":"x"}}`,
		`{"module_id":"im","command":"message","params":{}}`,
		`"just a string"`,
	} {
		if _, ok := typed(msg(body)).(Message); !ok {
			t.Errorf("%s: not a plain Message", body)
		}
	}
	if m := msg(`{"module_id":"IM","command":"message","params":{"a":1},"extra":{"b":2}}`); m.ModuleID != "im" || string(m.Params) != `{"a":1}` || string(m.Extra) != `{"b":2}` {
		t.Errorf("envelope %+v", m)
	}
}

// A shared-mode config: every subscribe URL carries its clientId, and one
// without a clientId is refused, as the official clients refuse it.
func TestParseConfigSharedMode(t *testing.T) {
	const cfg = `{"result":{"server":{"version":4,"mode":"shared","long_polling":"http://h/sub/","long_pooling_secure":"https://h/sub/",
		"websocket_enabled":true,"websocket":"ws://h/sub/","websocket_secure":"wss://h/sub/"},
		"channels":{"private":{"id":"a.1"},"shared":{"id":"b.2"}},"clientId":"0123456789abcdef0123456789abcdef"}}`
	c, err := ParseConfig([]byte(cfg), false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := SubscribeURL(c.WebSocketURL, c.Version, c.Format, c.Channels, c.JWT, ""), "ws://h/sub/?CHANNEL_ID=a.1%2Fb.2&binaryMode=true&clientId=0123456789abcdef0123456789abcdef"; got != want {
		t.Errorf("WebSocket URL %s, want %s", got, want)
	}
	if !strings.Contains(c.LongPollURL, "clientId=0123456789abcdef0123456789abcdef") {
		t.Errorf("long-poll URL %s has no clientId", c.LongPollURL)
	}
	if _, err := ParseConfig([]byte(strings.Replace(cfg, `,"clientId":"0123456789abcdef0123456789abcdef"`, "", 1)), false); err == nil {
		t.Fatal("a shared-mode config without clientId was accepted")
	}
}
