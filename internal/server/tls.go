package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// certificate is a listener's TLS certificate, read from its PEM files at
// start and again on every reload. Each connection takes the current one at
// its handshake, so a renewed certificate reaches new connections while the
// connections already open keep theirs and stay up.
type certificate struct {
	certFile, keyFile string
	// flag names the setting in messages: --tls-cert or --internal-tls-cert.
	flag string
	log  *slog.Logger
	cur  atomic.Pointer[tls.Certificate]
}

// certWarnBefore is how long before its expiry a certificate is warned
// about at every (re)load: long enough to renew it without haste.
const certWarnBefore = 14 * 24 * time.Hour

// loadCertificate reads a certificate and its key; nil, nil when certFile
// is empty (plain HTTP).
func loadCertificate(flag, certFile, keyFile string, log *slog.Logger) (*certificate, error) {
	if certFile == "" {
		return nil, nil
	}
	c := &certificate{certFile: certFile, keyFile: keyFile, flag: flag, log: log}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the files again and, if they hold a usable pair, makes it
// the one new handshakes get. On error the previous certificate stays.
func (c *certificate) reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("%s %s: %w", c.flag, c.certFile, err)
	}
	// LoadX509KeyPair fills Leaf; the expiry checks below need it.
	if pair.Leaf == nil {
		return fmt.Errorf("%s %s: no certificate", c.flag, c.certFile)
	}
	c.cur.Store(&pair)
	leaf := pair.Leaf
	left := time.Until(leaf.NotAfter)
	attrs := []any{"cert", c.certFile, "subject", leaf.Subject.String(), "names", leaf.DNSNames,
		"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
	switch log := c.log; {
	case left <= 0:
		log.Error("TLS certificate has expired: clients refuse it; renew it and send SIGHUP", attrs...)
	case left < certWarnBefore:
		log.Warn("TLS certificate expires soon: renew it and send SIGHUP", append(attrs, "expires_in", left.Round(time.Hour).String())...)
	default:
		log.Info("TLS certificate loaded", attrs...)
	}
	return nil
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// listen wraps ln so that it serves TLS with the current certificate.
//
// Only HTTP/1.1 is offered (ALPN): a WebSocket upgrade takes over the
// connection, which HTTP/2 has no way to hand over, and every client of
// the push server speaks HTTP/1.1.
func (c *certificate) listen(ln net.Listener) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		GetCertificate: c.get,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
	})
}

// ReloadTLS reads the TLS certificates and keys of both listeners again
// (SIGHUP calls it). A listener whose files cannot be read keeps serving
// its previous certificate, and the error says which file is wrong.
// Connections already open are not touched.
func (s *Server) ReloadTLS() error {
	var errs []error
	for _, c := range []*certificate{s.tlsCert, s.internalTLSCert} {
		if c == nil {
			continue
		}
		if err := c.reload(); err != nil {
			c.log.Error("TLS certificate not reloaded; the previous one is still served: fix the file and send SIGHUP again", "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reloadOnHangup calls ReloadTLS on every SIGHUP until stop is called. Without
// TLS a SIGHUP only says there is nothing to reload: it must not stop the
// server, as its default action would (`systemctl reload` sends it).
func (s *Server) reloadOnHangup() (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-hup:
			}
			if s.tlsCert == nil && s.internalTLSCert == nil {
				s.log.Info("SIGHUP: no TLS certificate to reload")
				continue
			}
			_ = s.ReloadTLS() // logged
		}
	}()
	return func() {
		signal.Stop(hup)
		close(quit)
		<-done
	}
}
