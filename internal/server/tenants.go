package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/tenant"
)

// tenantLoadTimeout bounds the first read of the tenants at start.
const tenantLoadTimeout = 30 * time.Second

// sharedMode is what shared mode adds to a server (docs/shared-mode.md):
// the tenants, kept in step with the registry, and the registration
// verifier.
type sharedMode struct {
	dir      *tenant.Directory
	verifier tenant.Verifier
	stop     context.CancelFunc
	done     chan struct{}
}

// startShared loads the tenants of the registry st and starts watching it
// for changes made elsewhere. The server's own portal is the home tenant:
// its client id is the portal's member_id, it signs with the server's key.
// nil in personal mode.
func startShared(cfg config.Config, st store.Store, portal store.Portal, signer *channel.Signer, log *slog.Logger) (*sharedMode, error) {
	if !cfg.Shared() {
		return nil, nil
	}
	dir := tenant.NewDirectory(st, tenant.Options{
		GlobalKey:    signer.Key(),
		Algo:         signer.Algo(),
		HomeClientID: portal.MemberID,
		HomeSigner:   signer,
	}, log)
	ctx, cancel := context.WithTimeout(context.Background(), tenantLoadTimeout)
	defer cancel()
	if err := dir.Load(ctx); err != nil {
		return nil, err
	}
	v, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	watchCtx, stop := context.WithCancel(context.Background())
	sm := &sharedMode{dir: dir, verifier: v, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(sm.done)
		dir.Watch(watchCtx, cfg.TenantReload)
	}()
	log.Info("shared mode", "tenants", dir.Len(), "verify", cfg.TenantVerify, "home_client_id", portal.MemberID)
	return sm, nil
}

func newVerifier(cfg config.Config) (tenant.Verifier, error) {
	switch cfg.TenantVerify {
	case tenant.VerifyOpen:
		return tenant.Open{}, nil
	case tenant.VerifyOperator:
		return tenant.Operator{}, nil
	case tenant.VerifyURL:
		return tenant.URL{Endpoint: cfg.TenantVerifyURL, Client: &http.Client{Timeout: 10 * time.Second}}, nil
	}
	return nil, fmt.Errorf("tenant-verify: unknown mode %q", cfg.TenantVerify)
}

// close stops watching the registry.
func (sm *sharedMode) close() {
	if sm == nil {
		return
	}
	sm.stop()
	<-sm.done
}

// homeClientID is the client id config.get hands out: the home tenant's in
// shared mode, none in personal mode.
func (sm *sharedMode) homeClientID() string {
	if sm == nil {
		return ""
	}
	return sm.dir.Home().ClientID
}

// SignatureKey is the key the server configured by cfg signs with, as
// `serve` finds it: --signature-key, else the one kept in the data dir (or,
// for a cluster, in Redis), generated there if there is none yet. The
// operator commands derive tenants' keys from it.
func SignatureKey(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.Redis == "" {
		return signatureKey(cfg, log)
	}
	cl, err := openCluster(cfg, log)
	if err != nil {
		return nil, err
	}
	defer cl.close()
	return cl.signatureKey(cfg, log)
}

// cloudRESTPath is where Bitrix's shared-mode config points clients'
// publishes (server.publish = https://<server>/rest/), which is the REST
// API's prefix here.
const cloudRESTPath = "/rest/"

// cloudClientPublish hands a client publish posted to /rest/ itself (with
// a CHANNEL_ID, which no REST call has) to the push server, and the rest of
// /rest/ to the REST API: in shared mode portals' clients publish there.
func cloudClientPublish(rt, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == cloudRESTPath && (r.Method == http.MethodPost || r.Method == http.MethodOptions) &&
			r.URL.Query().Has("CHANNEL_ID") {
			rt.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
