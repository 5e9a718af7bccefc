package config

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"log/slog"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// envMap returns an env lookup over m.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// files returns a readFile over m.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		data, ok := m[name]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		return []byte(data), nil
	}
}

// TestSettingsCoverConfig keeps the table and the struct in step: every
// field has one setting named by its json tag, pointing at that field.
func TestSettingsCoverConfig(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	table := settings()
	if len(table) != typ.NumField() {
		t.Errorf("settings() has %d entries, Config has %d fields", len(table), typ.NumField())
	}
	byName := make(map[string]setting)
	for _, s := range table {
		if _, dup := byName[s.name]; dup {
			t.Errorf("setting %q listed twice", s.name)
		}
		byName[s.name] = s
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		s, ok := byName[tag]
		if !ok {
			t.Errorf("field %s (json %q) has no setting", f.Name, tag)
			continue
		}
		var c Config
		want := reflect.ValueOf(&c).Elem().Field(i).Addr().Interface()
		if got := s.field(&c); reflect.ValueOf(got).Pointer() != reflect.ValueOf(want).Pointer() {
			t.Errorf("setting %q points at the wrong field, want %s", s.name, f.Name)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestLoadNothingGivesDefault(t *testing.T) {
	cfg, err := Load(nil, envMap(nil), files(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("Load() = %+v, want Default()", cfg)
	}
}

func TestLoadPrecedence(t *testing.T) {
	fileSys := files(map[string]string{
		"pp.json": `{
			"addr": "127.0.0.1:9000",
			"data-dir": "/from/file",
			"poll-timeout": 20,
			"log-level": "debug"
		}`,
	})
	env := envMap(map[string]string{
		"PUSHPULL_DATA_DIR":     "/from/env",
		"PUSHPULL_POLL_TIMEOUT": "25s",
		"PUSHPULL_SUB_PATHS":    "/env-sub/, /env-subws/",
		"PUSHPULL_LOG_LEVEL":    "", // empty is unset: the file's value stays
	})
	cfg, err := Load([]string{"--config", "pp.json", "--poll-timeout", "30s", "-sub-paths=/flag/"}, env, fileSys)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Addr = "127.0.0.1:9000"        // file over default
	want.DataDir = "/from/env"          // env over file
	want.PollTimeout = 30 * time.Second // flag over env over file
	want.SubPaths = []string{"/flag/"}  // flag over env
	want.LogLevel = "debug"             // file, env empty
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadConfigPathFromEnv(t *testing.T) {
	fileSys := files(map[string]string{
		"env.json":  `{"addr": ":1"}`,
		"flag.json": `{"addr": ":2"}`,
	})
	env := envMap(map[string]string{"PUSHPULL_CONFIG": "env.json"})
	cfg, err := Load(nil, env, fileSys)
	if err != nil || cfg.Addr != ":1" {
		t.Errorf("PUSHPULL_CONFIG: addr %q, err %v; want :1", cfg.Addr, err)
	}
	cfg, err = Load([]string{"--config=flag.json"}, env, fileSys)
	if err != nil || cfg.Addr != ":2" {
		t.Errorf("--config over PUSHPULL_CONFIG: addr %q, err %v; want :2", cfg.Addr, err)
	}
}

func TestLoadFileValueForms(t *testing.T) {
	fileSys := files(map[string]string{"c.json": `{
		"signature-key": "k",
		"sub-paths": ["/a/", "/b/"],
		"pub-paths": "/p/,/q/",
		"max-payload": "2MiB",
		"max-channels-per-request": 50,
		"history-per-channel": "10",
		"message-ttl": 3600,
		"ping-interval": "1m30s",
		"shutdown-timeout": "5"
	}`})
	cfg, err := Load([]string{"--config", "c.json"}, nil, fileSys)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.SignatureKey = "k"
	want.SubPaths = []string{"/a/", "/b/"}
	want.PubPaths = []string{"/p/", "/q/"}
	want.MaxPayload = 2 << 20
	want.MaxChannelsPerRequest = 50
	want.HistoryPerChannel = 10
	want.MessageTTL = time.Hour
	want.PingInterval = 90 * time.Second
	want.ShutdownTimeout = 5 * time.Second
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestServerVersionFiveAndItsSettings(t *testing.T) {
	cfg, err := Load([]string{"--server-version", "5", "--api-paths", "/v5/api/", "--jsonrpc-ping-interval", "5s"}, nil, files(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerVersion != 5 || !reflect.DeepEqual(cfg.APIPaths, []string{"/v5/api/"}) || cfg.JSONRPCPingInterval != 5*time.Second {
		t.Fatalf("loaded %d %v %s", cfg.ServerVersion, cfg.APIPaths, cfg.JSONRPCPingInterval)
	}
}

func TestLoadFlagValueForms(t *testing.T) {
	cfg, err := Load([]string{
		"--max-payload", "512KiB",
		"--write-timeout", "7",
		"--replay-total", " 300 ",
		"--pub-paths", "/x/,,/y/",
		"--addr", ":1", "--addr", ":2", // the last one wins
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxPayload != 512<<10 || cfg.WriteTimeout != 7*time.Second || cfg.ReplayTotal != 300 ||
		!slices.Equal(cfg.PubPaths, []string{"/x/", "/y/"}) || cfg.Addr != ":2" {
		t.Errorf("Load = %+v", cfg)
	}
}

func TestLoadErrors(t *testing.T) {
	fileSys := files(map[string]string{
		"unknown.json":  `{"addr": ":1", "adr": ":2"}`,
		"notobj.json":   `["addr"]`,
		"null.json":     `null`,
		"trailing.json": `{"addr": ":1"} {}`,
		"broken.json":   `{"addr": ":1",}`,
		"str.json":      `{"addr": 8080}`,
		"list.json":     `{"sub-paths": [1]}`,
		"int.json":      `{"send-queue": 1.5}`,
		"size.json":     `{"max-payload": "lots"}`,
		"dur.json":      `{"poll-timeout": 1.5}`,
		"durstr.json":   `{"poll-timeout": "soon"}`,
		"bool.json":     `{"ping-interval": true}`,
	})
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{
			name: "unknown flag",
			args: []string{"--adr", ":1"},
			want: "unknown flag --adr",
		},
		{
			name: "positional argument",
			args: []string{"--addr", ":1", "extra"},
			want: `unexpected argument "extra": serve takes only flags`,
		},
		{
			name: "missing file",
			args: []string{"--config", "nope.json"},
			want: "invalid --config: open nope.json: file does not exist",
		},
		{
			name: "unknown key",
			args: []string{"--config", "unknown.json"},
			want: `config file unknown.json: unknown setting "adr"`,
		},
		{
			name: "not an object",
			args: []string{"--config", "notobj.json"},
			want: "config file notobj.json: want a JSON object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
		},
		{
			name: "null",
			args: []string{"--config", "null.json"},
			want: "config file null.json: want a JSON object",
		},
		{
			name: "trailing data",
			args: []string{"--config", "trailing.json"},
			want: "config file trailing.json: unexpected data after the JSON object",
		},
		{
			name: "syntax",
			args: []string{"--config", "broken.json"},
			want: "config file broken.json: want a JSON object: invalid character '}' looking for beginning of object key string",
		},
		{
			name: "string wanted",
			args: []string{"--config", "str.json"},
			want: "config file str.json: invalid addr 8080: want a string",
		},
		{
			name: "list wanted",
			args: []string{"--config", "list.json"},
			want: `config file list.json: invalid sub-paths [1]: want a list of strings like ["/sub/"]`,
		},
		{
			name: "whole number wanted",
			args: []string{"--config", "int.json"},
			want: "config file int.json: invalid send-queue 1.5: want a whole number",
		},
		{
			name: "size string",
			args: []string{"--config", "size.json"},
			want: `config file size.json: invalid max-payload "lots": want a number of bytes, optionally with KiB, MiB or GiB`,
		},
		{
			name: "fractional seconds",
			args: []string{"--config", "dur.json"},
			want: `config file dur.json: invalid poll-timeout 1.5: want whole seconds, or a duration string like "40s"`,
		},
		{
			name: "duration string",
			args: []string{"--config", "durstr.json"},
			want: `config file durstr.json: invalid poll-timeout "soon": want a duration like "40s" or "1m30s", or whole seconds`,
		},
		{
			name: "bool for duration",
			args: []string{"--config", "bool.json"},
			want: `config file bool.json: invalid ping-interval true: want whole seconds, or a duration string like "40s"`,
		},
		{
			name: "env duration",
			env:  map[string]string{"PUSHPULL_POLL_TIMEOUT": "forever"},
			want: `invalid PUSHPULL_POLL_TIMEOUT "forever": want a duration like "40s" or "1m30s", or whole seconds`,
		},
		{
			name: "env int",
			env:  map[string]string{"PUSHPULL_SEND_QUEUE": "many"},
			want: `invalid PUSHPULL_SEND_QUEUE "many": want a whole number`,
		},
		{
			name: "flag size",
			args: []string{"--max-payload", "1MB"},
			want: `invalid --max-payload "1MB": want a number of bytes, optionally with KiB, MiB or GiB`,
		},
		{
			name: "flag size overflow",
			args: []string{"--max-payload", "9999999999999GiB"},
			want: `invalid --max-payload "9999999999999GiB": want a number of bytes, optionally with KiB, MiB or GiB`,
		},
		{
			name: "flag seconds overflow",
			args: []string{"--ping-interval", "99999999999999"},
			want: `invalid --ping-interval "99999999999999": want a duration like "40s" or "1m30s", or whole seconds`,
		},
		{
			name: "flag without value",
			args: []string{"--addr"},
			want: "--addr wants a value",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.args, envMap(tt.env), fileSys)
			if err == nil {
				t.Fatalf("Load succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Load error\n got %q\nwant %q", err, tt.want)
			}
		})
	}
}

func TestLoadHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		if _, err := Load([]string{arg}, nil, nil); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%s) = %v, want flag.ErrHelp", arg, err)
		}
	}
}

func TestWriteFlagHelp(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFlagHelp(&b); err != nil {
		t.Fatal(err)
	}
	help := b.String()
	for _, s := range settings() {
		for _, want := range []string{"--" + s.name + " ", envName(s.name)} {
			if !strings.Contains(help, want) {
				t.Errorf("help lacks %q", want)
			}
		}
	}
	for _, want := range []string{"--config FILE", "PUSHPULL_CONFIG", `default ":8080"`, "default 40s", "PUSHPULL_DATA_DIR"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{
			name:   "addr without port",
			modify: func(c *Config) { c.Addr = "localhost" },
			want:   `invalid --addr "localhost": want HOST:PORT, like ":8080" or "127.0.0.1:8080"`,
		},
		{
			name:   "addr port name",
			modify: func(c *Config) { c.Addr = ":http" },
			want:   `invalid --addr ":http": want a port number from 0 to 65535`,
		},
		{
			name:   "addr port range",
			modify: func(c *Config) { c.Addr = ":65536" },
			want:   `invalid --addr ":65536": want a port number from 0 to 65535`,
		},
		{
			name:   "addr host",
			modify: func(c *Config) { c.Addr = "http://x:80" },
			want:   `invalid --addr "http://x:80": want HOST:PORT, like ":8080" or "127.0.0.1:8080"`,
		},
		{
			name:   "data dir",
			modify: func(c *Config) { c.DataDir = " " },
			want:   `invalid --data-dir " ": want a directory`,
		},
		{
			name:   "signature key blank, not echoed",
			modify: func(c *Config) { c.SignatureKey = "s3cret\n" },
			want:   `invalid --signature-key: has leading or trailing white space`,
		},
		{
			name:   "console token short, not echoed",
			modify: func(c *Config) { c.ConsoleToken = "s3cret" },
			want:   `invalid --console-token: want at least 16 characters`,
		},
		{
			name:   "console token blank, not echoed",
			modify: func(c *Config) { c.ConsoleToken = "operator token 0123456789" },
			want:   `invalid --console-token: has white space`,
		},
		{
			name:   "signature algo",
			modify: func(c *Config) { c.SignatureAlgo = "md5" },
			want:   `invalid --signature-algo "md5": want sha1 or sha256`,
		},
		{
			name:   "public url scheme",
			modify: func(c *Config) { c.PublicURL = "ws://push.example.com" },
			want:   `invalid --public-url "ws://push.example.com": want an http or https URL, like "https://push.example.com"`,
		},
		{
			name:   "public url without host",
			modify: func(c *Config) { c.PublicURL = "push.example.com" },
			want:   `invalid --public-url "push.example.com": want an http or https URL, like "https://push.example.com"`,
		},
		{
			name:   "public url query",
			modify: func(c *Config) { c.PublicURL = "https://push.example.com/?a=b" },
			want:   `invalid --public-url "https://push.example.com/?a=b": want a URL without query or fragment: paths are appended to it`,
		},
		{
			name:   "push webhook scheme",
			modify: func(c *Config) { c.PushWebhook = "ftp://backend.example.com/push" },
			want:   `invalid --push-webhook "ftp://backend.example.com/push": want an http or https URL, like "https://backend.example.com/push"`,
		},
		{
			name:   "push webhook without host",
			modify: func(c *Config) { c.PushWebhook = "backend.example.com/push" },
			want:   `invalid --push-webhook "backend.example.com/push": want an http or https URL, like "https://backend.example.com/push"`,
		},
		{
			name:   "redis scheme, password not echoed",
			modify: func(c *Config) { c.Redis = "http://:secret@127.0.0.1:6379" },
			want:   `invalid --redis "http://:xxxxx@127.0.0.1:6379": want a redis://, rediss://, valkey:// or unix:// URL`,
		},
		{
			name:   "redis without host",
			modify: func(c *Config) { c.Redis = "redis:///0" },
			want:   `invalid --redis "redis:///0": want a host, like "redis://127.0.0.1:6379"`,
		},
		{
			name:   "redis prefix with a brace",
			modify: func(c *Config) { c.RedisPrefix = "a{b" },
			want:   `invalid --redis-prefix "a{b": want a name without spaces, braces or colons, like "pushpull"`,
		},
		{
			name:   "sub paths empty",
			modify: func(c *Config) { c.SubPaths = nil },
			want:   `invalid --sub-paths "": want at least one path, like "/sub/"`,
		},
		{
			name:   "sub path without trailing slash",
			modify: func(c *Config) { c.SubPaths = []string{"/sub/", "/subws"} },
			want:   `invalid --sub-paths "/subws": want a path that starts and ends with "/", like "/sub/"`,
		},
		{
			name:   "pub path without leading slash",
			modify: func(c *Config) { c.PubPaths = []string{"pub/"} },
			want:   `invalid --pub-paths "pub/": want a path that starts and ends with "/", like "/sub/"`,
		},
		{
			name:   "pub paths empty",
			modify: func(c *Config) { c.PubPaths = []string{} },
			want:   `invalid --pub-paths "": want at least one path, like "/sub/"`,
		},
		{
			name:   "path with pattern syntax",
			modify: func(c *Config) { c.PubPaths = []string{"/{id}/"} },
			want:   `invalid --pub-paths "/{id}/": want a plain path without blanks or any of {}?#%`,
		},
		{
			name:   "unclean path",
			modify: func(c *Config) { c.SubPaths = []string{"/a//b/"} },
			want:   `invalid --sub-paths "/a//b/": want a clean path, without "//", "." or ".." elements`,
		},
		{
			name:   "stat path",
			modify: func(c *Config) { c.StatPath = "/server-stat" },
			want:   `invalid --stat-path "/server-stat": want a path that starts and ends with "/", like "/sub/"`,
		},
		{
			name:   "path listed twice",
			modify: func(c *Config) { c.SubPaths = []string{"/sub/", "/sub/"} },
			want:   `invalid --sub-paths "/sub/": listed twice`,
		},
		{
			name:   "path shared by routes",
			modify: func(c *Config) { c.StatPath = "/pub/" },
			want:   `invalid --stat-path "/pub/": already used by --pub-paths`,
		},
		{
			name:   "max payload",
			modify: func(c *Config) { c.MaxPayload = 0 },
			want:   `invalid --max-payload "0": want more than 0`,
		},
		{
			name:   "max channels",
			modify: func(c *Config) { c.MaxChannelsPerRequest = -1 },
			want:   `invalid --max-channels-per-request "-1": want more than 0`,
		},
		{
			name:   "message ttl",
			modify: func(c *Config) { c.MessageTTL = 0 },
			want:   `invalid --message-ttl "0s": want a duration more than 0, like 40s`,
		},
		{
			name:   "history",
			modify: func(c *Config) { c.HistoryPerChannel = 0 },
			want:   `invalid --history-per-channel "0": want more than 0`,
		},
		{
			name:   "replay per channel",
			modify: func(c *Config) { c.ReplayPerChannel = 0 },
			want:   `invalid --replay-per-channel "0": want more than 0`,
		},
		{
			name:   "replay total",
			modify: func(c *Config) { c.ReplayTotal = 0 },
			want:   `invalid --replay-total "0": want more than 0`,
		},
		{
			name:   "poll timeout",
			modify: func(c *Config) { c.PollTimeout = -time.Second },
			want:   `invalid --poll-timeout "-1s": want a duration more than 0, like 40s`,
		},
		{
			name:   "poll timeout beyond the clients",
			modify: func(c *Config) { c.PollTimeout = time.Minute },
			want:   `invalid --poll-timeout "1m0s": want less than 1m0s, after which the official clients abort a poll`,
		},
		{
			name:   "ping interval",
			modify: func(c *Config) { c.PingInterval = 0 },
			want:   `invalid --ping-interval "0s": want a duration more than 0, like 40s`,
		},
		{
			name:   "jsonrpc ping interval",
			modify: func(c *Config) { c.JSONRPCPingInterval = 0 },
			want:   `invalid --jsonrpc-ping-interval "0s": want a duration more than 0, like 40s`,
		},
		{
			name:   "jsonrpc ping interval beyond the clients",
			modify: func(c *Config) { c.JSONRPCPingInterval = 20 * time.Second },
			want:   `invalid --jsonrpc-ping-interval "20s": want less than 20s, after which the official clients reconnect`,
		},
		{
			name:   "server version 6",
			modify: func(c *Config) { c.ServerVersion = 6 },
			want:   `invalid --server-version "6": want 3, 4 or 5`,
		},
		{
			name:   "server version 2",
			modify: func(c *Config) { c.ServerVersion = 2 },
			want:   `invalid --server-version "2": want 3, 4 or 5`,
		},
		{
			name:   "api path shared with pub",
			modify: func(c *Config) { c.APIPaths = []string{"/pub/"} },
			want:   `invalid --api-paths "/pub/": already used by --pub-paths`,
		},
		{
			name:   "api path form",
			modify: func(c *Config) { c.APIPaths = []string{"api"} },
			want:   `invalid --api-paths "api": want a path that starts and ends with "/", like "/sub/"`,
		},
		{
			name:   "write timeout",
			modify: func(c *Config) { c.WriteTimeout = 0 },
			want:   `invalid --write-timeout "0s": want a duration more than 0, like 40s`,
		},
		{
			name:   "send queue",
			modify: func(c *Config) { c.SendQueue = 0 },
			want:   `invalid --send-queue "0": want more than 0`,
		},
		{
			name:   "socket writes",
			modify: func(c *Config) { c.SocketWrites = "uring" },
			want:   `invalid --socket-writes "uring": want writev or io_uring`,
		},
		{
			name:   "negative client publish rate",
			modify: func(c *Config) { c.ClientPublishRate = -1 },
			want:   `invalid --client-publish-rate "-1": want 0 (no limit) or more`,
		},
		{
			name:   "client publish burst",
			modify: func(c *Config) { c.ClientPublishBurst = 0 },
			want:   `invalid --client-publish-burst "0": want more than 0`,
		},
		{
			name:   "client publish ip burst",
			modify: func(c *Config) { c.ClientPublishIPBurst = -5 },
			want:   `invalid --client-publish-ip-burst "-5": want more than 0`,
		},
		{
			name:   "client publish target burst",
			modify: func(c *Config) { c.ClientPublishTargetBurst = 0 },
			want:   `invalid --client-publish-target-burst "0": want more than 0`,
		},
		{
			name:   "shutdown timeout",
			modify: func(c *Config) { c.ShutdownTimeout = 0 },
			want:   `invalid --shutdown-timeout "0s": want a duration more than 0, like 40s`,
		},
		{
			name:   "internal addr empty",
			modify: func(c *Config) { c.InternalAddr = "" },
			want:   `invalid --internal-addr "": want HOST:PORT, like "127.0.0.1:8895", or "same" to serve the trusted routes on --addr`,
		},
		{
			name:   "internal addr is addr",
			modify: func(c *Config) { c.Addr = "127.0.0.1:9000"; c.InternalAddr = "127.0.0.1:9000" },
			want:   `invalid --internal-addr "127.0.0.1:9000": is --addr; write "same" to serve the trusted routes there`,
		},
		{
			name:   "body read timeout",
			modify: func(c *Config) { c.BodyReadTimeout = 0 },
			want:   `invalid --body-read-timeout "0s": want a duration more than 0, like 40s`,
		},
		{
			name:   "max large requests",
			modify: func(c *Config) { c.MaxLargeRequests = -1 },
			want:   `invalid --max-large-requests "-1": want 0 (sized for the machine) or more`,
		},
		{
			name:   "tls key without certificate",
			modify: func(c *Config) { c.TLSKey = "key.pem" },
			want:   `invalid --tls-cert "": is missing: --tls-key is set, and a key needs its certificate`,
		},
		{
			name:   "tls certificate without key",
			modify: func(c *Config) { c.TLSCert = "cert.pem" },
			want:   `invalid --tls-key "": is missing: --tls-cert is set, and a certificate needs its key`,
		},
		{
			name:   "internal tls certificate without key",
			modify: func(c *Config) { c.InternalTLSCert = "cert.pem" },
			want:   `invalid --internal-tls-key "": is missing: --internal-tls-cert is set, and a certificate needs its key`,
		},
		{
			name: "internal tls without an internal listener",
			modify: func(c *Config) {
				c.InternalAddr = SameAddr
				c.InternalTLSCert, c.InternalTLSKey = "cert.pem", "key.pem"
			},
			want: `invalid --internal-tls-cert "cert.pem": needs a listener of its own: --internal-addr is "same", so --tls-cert serves the trusted routes`,
		},
		{
			name:   "log level",
			modify: func(c *Config) { c.LogLevel = "verbose" },
			want:   `invalid --log-level "verbose": want debug, info, warn or error`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Validate()\n got %q\nwant %q", err, tt.want)
			}
			var cfgErr *Error
			if !errors.As(err, &cfgErr) || !strings.HasPrefix(cfgErr.Name, "--") {
				t.Errorf("Validate() = %#v, want an *Error naming a flag", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, modify := range []func(c *Config){
		func(c *Config) { c.Addr = "127.0.0.1:0" },
		func(c *Config) { c.Addr = "[::1]:8080" },
		func(c *Config) { c.PublicURL = "https://push.example.com/bitrix/" },
		func(c *Config) { c.SubPaths = []string{"/"} },
		func(c *Config) { c.PushWebhook = "http://127.0.0.1:9000/push?token=x" },
		func(c *Config) { c.LogLevel = "DEBUG" },
		func(c *Config) { c.InternalAddr = SameAddr },
		func(c *Config) { c.InternalAddr = "10.0.0.5:8895" },
		func(c *Config) { c.TLSCert, c.TLSKey = "cert.pem", "key.pem" },
		func(c *Config) { c.InternalTLSCert, c.InternalTLSKey = "cert.pem", "key.pem" },
		// A rate of 0 turns a limit off, and its burst then means nothing.
		func(c *Config) { c.ClientPublishIPRate, c.ClientPublishIPBurst = 0, 0 },
		func(c *Config) { c.SignatureAlgo = "sha256"; c.SignatureKey = "key with inner blanks" },
	} {
		c := Default()
		modify(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

// TestDefaultKeepsTrustedRoutesOnLoopback is the safe default layout: the
// backend publish routes on a loopback listener of their own.
func TestDefaultKeepsTrustedRoutesOnLoopback(t *testing.T) {
	c := Default()
	if c.InternalAddr != "127.0.0.1:8895" || c.TrustedOnAddr() {
		t.Fatalf("default --internal-addr %q", c.InternalAddr)
	}
	if c.BodyReadTimeout != 10*time.Second {
		t.Fatalf("default --body-read-timeout %s", c.BodyReadTimeout)
	}
}

func TestSlogLevel(t *testing.T) {
	for name, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "Info": slog.LevelInfo, "warn": slog.LevelWarn, "ERROR": slog.LevelError, "bogus": slog.LevelInfo,
	} {
		if got := (Config{LogLevel: name}).SlogLevel(); got != want {
			t.Errorf("SlogLevel(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestHistoryBytesSizedForTheMachine(t *testing.T) {
	c := Default()
	if got := c.HistoryBytes(); got < historyBytesFloor || got > historyBytesCeiling {
		t.Fatalf("sized for the machine: %d, want within [%d, %d]", got, historyBytesFloor, historyBytesCeiling)
	}
	c.HistoryMaxBytes = 5 << 20
	if got := c.HistoryBytes(); got != 5<<20 {
		t.Fatalf("set to 5 MiB: %d", got)
	}
}

func TestLargeRequestSlotsSizedForTheMachine(t *testing.T) {
	c := Default()
	if got, want := c.LargeRequestSlots(), 2*runtime.GOMAXPROCS(0); c.MaxLargeRequests != 0 || got != want {
		t.Fatalf("default --max-large-requests %d gives %d slots, want 0 giving %d", c.MaxLargeRequests, got, want)
	}
	c.MaxLargeRequests = 3
	if got := c.LargeRequestSlots(); got != 3 {
		t.Fatalf("set to 3: %d", got)
	}
}

func TestHistoryChannelCapHoldsTheLargestMessage(t *testing.T) {
	c := Default()
	c.HistoryChannelMaxBytes = c.MaxPayload - 1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), historyChanMaxBytes) {
		t.Fatalf("a channel cap below max-payload: %v", err)
	}
}
