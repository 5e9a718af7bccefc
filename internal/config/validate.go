package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// clientPollAbort is how long the official clients wait for a long poll
// before they abort it and count an error (LONG_POLLING_TIMEOUT in
// b24jssdk and BX.PullClient; docs/protocol.md, "Subscribing"). A server that
// holds polls longer would turn every quiet poll into a reconnect with
// backoff.
const clientPollAbort = 60 * time.Second

// clientPingWait is how long the official clients wait for the next text
// ping of a version 5 connection before they reconnect (2 × PING_TIMEOUT).
const clientPingWait = 20 * time.Second

// maxWriteMergeDelay bounds --write-merge-delay: held messages queue
// against --send-queue, and a delay of seconds would be a batching window
// that clients notice, not a latency budget.
const maxWriteMergeDelay = time.Second

// parseLevel maps the accepted --log-level names, in any case, to slog levels.
func parseLevel(name string) (slog.Level, bool) {
	switch strings.ToLower(name) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// Validate reports the first unusable setting, in the order of the flags'
// help, as an *Error that names it by its flag: one line that says which
// setting, its value, and what is wanted.
func (c Config) Validate() error {
	checks := []func() error{
		func() error { return checkAddr(addr, c.Addr) },
		func() error {
			if c.DebugAddr == "" {
				return nil
			}
			return checkAddr(debugAddr, c.DebugAddr)
		},
		func() error {
			if c.InternalAddr == SameAddr {
				return nil
			}
			if c.InternalAddr == "" {
				return invalid(internalAddr, c.InternalAddr, `want HOST:PORT, like "127.0.0.1:8895", or "same" to serve the trusted routes on --addr`)
			}
			if err := checkAddr(internalAddr, c.InternalAddr); err != nil {
				return err
			}
			if c.InternalAddr == c.Addr {
				return invalid(internalAddr, c.InternalAddr, `is --addr; write "same" to serve the trusted routes there`)
			}
			return nil
		},
		func() error {
			if strings.TrimSpace(c.DataDir) == "" {
				return invalid(dataDir, c.DataDir, "want a directory")
			}
			return nil
		},
		func() error {
			// Keys are pasted from the Bitrix admin page or an env file; a
			// stray blank would silently break every signature.
			if c.SignatureKey != strings.TrimSpace(c.SignatureKey) {
				return &Error{Name: flagName(signatureKey), Reason: "has leading or trailing white space", secret: true}
			}
			return nil
		},
		func() error {
			if c.SignatureAlgo != "sha1" && c.SignatureAlgo != "sha256" {
				return invalid(signatureAlgo, c.SignatureAlgo, "want sha1 or sha256")
			}
			return nil
		},
		func() error { return checkPublicURL(c.PublicURL) },
		func() error { return checkPair(tlsCert, c.TLSCert, tlsKey, c.TLSKey) },
		func() error {
			if err := checkPair(internalTLSCert, c.InternalTLSCert, internalTLSKey, c.InternalTLSKey); err != nil {
				return err
			}
			if c.InternalTLSCert != "" && c.InternalAddr == SameAddr {
				return invalid(internalTLSCert, c.InternalTLSCert, `needs a listener of its own: --internal-addr is "same", so --tls-cert serves the trusted routes`)
			}
			return nil
		},
		func() error { return checkHostNames(consoleHosts, c.ConsoleHosts) },
		func() error {
			for _, s := range c.TrustedProxies {
				if _, err := parsePrefix(s); err != nil {
					return invalid(trustedProxies, s, "want an address or a CIDR prefix, such as 10.0.0.0/8 or 192.0.2.7")
				}
			}
			return nil
		},
		func() error { return checkPaths(subPaths, c.SubPaths) },
		func() error { return checkPaths(pubPaths, c.PubPaths) },
		func() error { return checkPaths(pubWebPaths, c.PubWebPaths) },
		func() error { return checkPaths(apiPaths, c.APIPaths) },
		func() error {
			if err := checkPath(c.StatPath); err != "" {
				return invalid(statPath, c.StatPath, err)
			}
			return nil
		},
		func() error { return c.checkPathsDistinct() },
		func() error { return positive(maxPayload, c.MaxPayload) },
		func() error { return positive(maxChannelsPerRequest, c.MaxChannelsPerRequest) },
		func() error { return positiveDuration(messageTTL, c.MessageTTL) },
		func() error { return positive(historyPerChannel, c.HistoryPerChannel) },
		func() error { return positive(historyMax, c.HistoryMax) },
		func() error {
			if c.HistoryMaxBytes < 0 {
				return invalid(historyMaxBytes, fmt.Sprint(c.HistoryMaxBytes), "want 0 (sized for the machine) or a size")
			}
			return nil
		},
		func() error {
			if c.HistoryChannelMaxBytes < c.MaxPayload {
				return invalid(historyChanMaxBytes, fmt.Sprint(c.HistoryChannelMaxBytes),
					fmt.Sprintf("want at least --%s (%d), or a channel could not keep its largest message", maxPayload, c.MaxPayload))
			}
			return nil
		},
		func() error { return positive(replayPerChannel, c.ReplayPerChannel) },
		func() error { return positive(maxConnPerChannel, c.MaxConnPerChannel) },
		func() error {
			return rateLimit(clientPublishRate, c.ClientPublishRate, clientPublishBurst, c.ClientPublishBurst)
		},
		func() error {
			return rateLimit(clientPublishIPRate, c.ClientPublishIPRate, clientPublishIPBurst, c.ClientPublishIPBurst)
		},
		func() error {
			return rateLimit(clientPublishTargetRate, c.ClientPublishTargetRate, clientPublishTargetBurst, c.ClientPublishTargetBurst)
		},
		func() error {
			if c.ServerVersion < 3 || c.ServerVersion > 5 {
				return invalid(serverVersion, fmt.Sprint(c.ServerVersion), "want 3, 4 or 5")
			}
			return nil
		},
		func() error { return checkPushWebhook(c.PushWebhook) },
		func() error { return c.checkShared() },
		func() error { return checkPaths(registerPaths, c.RegisterPaths) },
		func() error { return checkPaths(systemctlPaths, c.SystemctlPaths) },
		func() error { return positiveDuration(tenantReload, c.TenantReload) },
		func() error { return checkConsoleToken(c.ConsoleToken) },
		func() error { return checkRedis(c.Redis) },
		func() error {
			if strings.TrimSpace(c.RedisPrefix) == "" || strings.ContainsAny(c.RedisPrefix, "{}: ") {
				return invalid(redisPrefix, c.RedisPrefix, `want a name without spaces, braces or colons, like "pushpull"`)
			}
			return nil
		},
		func() error { return positive(replayTotal, c.ReplayTotal) },
		func() error {
			if err := positiveDuration(pollTimeout, c.PollTimeout); err != nil {
				return err
			}
			if c.PollTimeout >= clientPollAbort {
				return invalid(pollTimeout, c.PollTimeout.String(),
					fmt.Sprintf("want less than %s, after which the official clients abort a poll", clientPollAbort))
			}
			return nil
		},
		func() error { return positiveDuration(pingInterval, c.PingInterval) },
		func() error {
			if err := positiveDuration(jsonRPCPingInterval, c.JSONRPCPingInterval); err != nil {
				return err
			}
			if c.JSONRPCPingInterval >= clientPingWait {
				return invalid(jsonRPCPingInterval, c.JSONRPCPingInterval.String(),
					fmt.Sprintf("want less than %s, after which the official clients reconnect", clientPingWait))
			}
			return nil
		},
		func() error { return positiveDuration(writeTimeout, c.WriteTimeout) },
		func() error {
			if c.WriteMergeDelay < 0 || c.WriteMergeDelay > maxWriteMergeDelay {
				return invalid(writeMergeDelay, c.WriteMergeDelay.String(),
					fmt.Sprintf("want 0 (off) to %s: it is a latency budget, not a batching window", maxWriteMergeDelay))
			}
			return nil
		},
		func() error { return positive(sendQueue, c.SendQueue) },
		func() error { return positiveDuration(shutdownTimeout, c.ShutdownTimeout) },
		func() error { return positiveDuration(bodyReadTimeout, c.BodyReadTimeout) },
		func() error {
			if c.MaxLargeRequests < 0 {
				return invalid(maxLargeRequests, strconv.Itoa(c.MaxLargeRequests), "want 0 (sized for the machine) or more")
			}
			return nil
		},
		func() error {
			if c.LargeRequestRate < 0 {
				return invalid(largeRequestRate, strconv.Itoa(c.LargeRequestRate), "want 0 (unpaced) or more")
			}
			return nil
		},
		func() error {
			if c.LargeRequestRateAll < -1 {
				return invalid(largeRequestRateAll, strconv.Itoa(c.LargeRequestRateAll), "want -1 (unpaced), 0 (sized for the machine) or more")
			}
			return nil
		},
		func() error {
			if _, ok := parseLevel(c.LogLevel); !ok {
				return invalid(logLevel, c.LogLevel, "want debug, info, warn or error")
			}
			return nil
		},
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// SlogLevel returns the slog level named by LogLevel, or slog.LevelInfo if
// the name is unknown (which Validate reports).
func (c Config) SlogLevel() slog.Level {
	if l, ok := parseLevel(c.LogLevel); ok {
		return l
	}
	return slog.LevelInfo
}

func invalid(name, value, reason string) error {
	return &Error{Name: flagName(name), Value: value, Reason: reason}
}

func positive[T int | int64](name string, v T) error {
	if v <= 0 {
		return invalid(name, strconv.FormatInt(int64(v), 10), "want more than 0")
	}
	return nil
}

// rateLimit checks a token bucket's settings: a rate of 0 turns the limit
// off; any other needs a burst of at least one message.
func rateLimit(rateName string, rate int, burstName string, burst int) error {
	if rate < 0 {
		return invalid(rateName, strconv.Itoa(rate), "want 0 (no limit) or more")
	}
	if rate > 0 {
		return positive(burstName, burst)
	}
	return nil
}

func positiveDuration(name string, d time.Duration) error {
	if d <= 0 {
		return invalid(name, d.String(), "want a duration more than 0, like 40s")
	}
	return nil
}

func checkAddr(name, v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return invalid(name, v, `want HOST:PORT, like ":8080" or "127.0.0.1:8080"`)
	}
	// A service name such as "http" would be looked up at listen time; a
	// number is what everyone means and can be checked here.
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port != strconv.FormatUint(n, 10) {
		return invalid(name, v, "want a port number from 0 to 65535")
	}
	if strings.ContainsAny(host, " /") {
		return invalid(name, v, "want a host name or IP address before the port")
	}
	return nil
}

func checkPublicURL(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(publicURL, v, `want an http or https URL, like "https://push.example.com"`)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return invalid(publicURL, v, "want a URL without query or fragment: paths are appended to it")
	}
	return nil
}

// checkPair refuses a certificate without its key and a key without its
// certificate: half a TLS setting would silently serve plain HTTP.
func checkPair(certName, cert, keyName, key string) error {
	switch {
	case cert == "" && key != "":
		return invalid(certName, "", "is missing: --"+keyName+" is set, and a key needs its certificate")
	case cert != "" && key == "":
		return invalid(keyName, "", "is missing: --"+certName+" is set, and a certificate needs its key")
	}
	return nil
}

func checkRedis(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return invalid(redisURL, "(unparsable)", `want a URL like "redis://127.0.0.1:6379"`)
	}
	shown := u.Redacted() // the URL may carry the Redis password
	switch u.Scheme {
	case "redis", "rediss", "valkey", "valkeys":
		if u.Host == "" {
			return invalid(redisURL, shown, `want a host, like "redis://127.0.0.1:6379"`)
		}
	case "unix":
	default:
		return invalid(redisURL, shown, `want a redis://, rediss://, valkey:// or unix:// URL`)
	}
	return nil
}

func checkPushWebhook(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(pushWebhook, v, `want an http or https URL, like "https://backend.example.com/push"`)
	}
	return nil
}

func checkPaths(name string, paths []string) error {
	if len(paths) == 0 {
		return invalid(name, "", `want at least one path, like "/sub/"`)
	}
	for _, p := range paths {
		if reason := checkPath(p); reason != "" {
			return invalid(name, p, reason)
		}
	}
	return nil
}

// checkPath returns why p cannot be a route prefix, or "".
func checkPath(p string) string {
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		return `want a path that starts and ends with "/", like "/sub/"`
	}
	// The paths become http.ServeMux patterns, where blanks separate a
	// method and braces are wildcards; the rest would never match a
	// cleaned request path.
	if strings.ContainsAny(p, " \t{}?#%") {
		return "want a plain path without blanks or any of {}?#%"
	}
	if p != "/" && path.Clean(p)+"/" != p {
		return `want a clean path, without "//", "." or ".." elements`
	}
	return ""
}

// checkPathsDistinct refuses a path given to two routes: which one would
// answer it is not something a config should leave to chance.
func (c Config) checkPathsDistinct() error {
	owner := make(map[string]string)
	claim := func(name, p string) error {
		if prev, ok := owner[p]; ok {
			if prev == name {
				return invalid(name, p, "listed twice")
			}
			return invalid(name, p, "already used by "+flagName(prev))
		}
		owner[p] = name
		return nil
	}
	for _, p := range c.SubPaths {
		if err := claim(subPaths, p); err != nil {
			return err
		}
	}
	for _, p := range c.PubPaths {
		if err := claim(pubPaths, p); err != nil {
			return err
		}
	}
	for _, p := range c.PubWebPaths {
		if err := claim(pubWebPaths, p); err != nil {
			return err
		}
	}
	for _, p := range c.APIPaths {
		if err := claim(apiPaths, p); err != nil {
			return err
		}
	}
	if c.Shared() {
		for _, p := range c.RegisterPaths {
			if err := claim(registerPaths, p); err != nil {
				return err
			}
		}
		for _, p := range c.SystemctlPaths {
			if err := claim(systemctlPaths, p); err != nil {
				return err
			}
		}
	}
	return claim(statPath, c.StatPath)
}

func (c Config) checkShared() error {
	if c.Mode != ModePersonal && c.Mode != ModeShared {
		return invalid(mode, c.Mode, "want personal or shared")
	}
	switch c.TenantVerify {
	case "open", "operator":
	case "url":
		u, err := url.Parse(c.TenantVerifyURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid(tenantVerifyURL, c.TenantVerifyURL, `want the http or https URL of the verifying endpoint with --tenant-verify=url`)
		}
	default:
		return invalid(tenantVerify, c.TenantVerify, "want open, operator or url")
	}
	return nil
}

// minConsoleToken keeps the console's credential out of guessing range.
const minConsoleToken = 16

// checkConsoleToken never puts the value in the error: it is a secret.
func checkConsoleToken(v string) error {
	switch {
	case v == "":
		return nil
	case strings.ContainsAny(v, " \t\r\n"):
		return &Error{Name: flagName(consoleToken), Reason: "has white space", secret: true}
	case len(v) < minConsoleToken:
		return &Error{Name: flagName(consoleToken), Reason: fmt.Sprintf("want at least %d characters", minConsoleToken), secret: true}
	}
	return nil
}

// checkHostNames accepts bare DNS names: no scheme, port, path or space.
func checkHostNames(name string, hosts []string) error {
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, "/:@ \t") {
			return invalid(name, h, "want host names without scheme, port or path, such as push-admin.example.org")
		}
	}
	return nil
}
