package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/store"
)

// ErrUnknown is a client id and host that name no tenant.
var ErrUnknown = errors.New("unknown tenant")

// ErrInvalid is a client id or host of the wrong shape.
var ErrInvalid = errors.New("invalid client id or host")

type pair struct{ clientID, host string }

// Directory is the tenants a shared-mode server serves: the registry's,
// held in memory. It reloads when the registry's version moves (Watch),
// which is how a tenant unregistered on another node, or removed with the
// operator CLI, stops being served here, and tells OnRemove so that its
// connections are cut.
type Directory struct {
	reg    store.Tenants
	global []byte
	algo   channel.Algo
	home   *Tenant
	log    *slog.Logger

	mu      sync.RWMutex
	tenants map[pair]*Tenant
	// misses are pairs the registry did not know since the last reload,
	// so that a flood of made-up client ids costs no registry reads; at
	// most maxMisses, emptied by every reload.
	misses   map[pair]struct{}
	version  int64
	onRemove []func(*Tenant)
}

// maxMisses bounds the remembered unknown pairs (about 100 bytes each).
const maxMisses = 10000

// Options configure a Directory.
type Options struct {
	// GlobalKey is the server's signature key, from which every tenant's
	// key is derived.
	GlobalKey []byte
	Algo      channel.Algo
	// HomeClientID, when set, is the client id of this server's own
	// portal (its REST side): it is served on any host, signs with the
	// server's own key and uses the unscoped channels.
	HomeClientID string
	// HomeSigner is the server's signer, the home tenant's.
	HomeSigner *channel.Signer
}

// NewDirectory returns a directory over reg; call Load before serving.
func NewDirectory(reg store.Tenants, opt Options, log *slog.Logger) *Directory {
	d := &Directory{
		reg:     reg,
		global:  append([]byte(nil), opt.GlobalKey...),
		algo:    opt.Algo,
		log:     log,
		tenants: make(map[pair]*Tenant),
		misses:  make(map[pair]struct{}),
	}
	if opt.HomeClientID != "" {
		d.home = &Tenant{ClientID: opt.HomeClientID, Key: string(opt.GlobalKey), Home: true, algo: opt.Algo, signer: opt.HomeSigner}
	}
	return d
}

// Home is the home tenant, or nil.
func (d *Directory) Home() *Tenant { return d.home }

// OnRemove registers fn to be called with every tenant that stops being
// served: removed here, or found gone on a reload.
func (d *Directory) OnRemove(fn func(*Tenant)) {
	d.mu.Lock()
	d.onRemove = append(d.onRemove, fn)
	d.mu.Unlock()
}

// Load reads every tenant from the registry, replacing what is held; the
// tenants that are gone are handed to OnRemove.
func (d *Directory) Load(ctx context.Context) error {
	v, err := d.reg.TenantsVersion(ctx)
	if err != nil {
		return fmt.Errorf("tenants: %w", err)
	}
	list, err := d.reg.ListTenants(ctx)
	if err != nil {
		return fmt.Errorf("tenants: %w", err)
	}
	next := make(map[pair]*Tenant, len(list))
	d.mu.RLock()
	for _, rec := range list {
		k := pair{rec.ClientID, rec.Host}
		if t, ok := d.tenants[k]; ok {
			next[k] = t // keeps its signer
		} else {
			next[k] = newTenant(d.global, d.algo, rec.ClientID, rec.Host)
		}
	}
	d.mu.RUnlock()
	d.mu.Lock()
	var gone []*Tenant
	for k, t := range d.tenants {
		if _, ok := next[k]; !ok {
			gone = append(gone, t)
		}
	}
	d.tenants, d.version = next, v
	clear(d.misses)
	fns := d.onRemove
	d.mu.Unlock()
	for _, t := range gone {
		d.log.Info("tenant no longer served", "client_id", t.ClientID, "host", t.Host)
		for _, fn := range fns {
			fn(t)
		}
	}
	return nil
}

// Watch reloads the directory whenever the registry's version moves,
// checking every interval until ctx ends.
func (d *Directory) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := d.reg.TenantsVersion(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("tenants: cannot read the registry's version", "err", err)
			}
			continue
		}
		d.mu.RLock()
		same := v == d.version
		d.mu.RUnlock()
		if same {
			continue
		}
		if err := d.Load(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("tenants: reload failed", "err", err)
		}
	}
}

// NormalizeHost is the host of a request as tenants are keyed: lower case,
// without a port.
func NormalizeHost(hostport string) string {
	h := hostport
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.ToLower(h)
}

// Lookup returns the tenant a request names. A held tenant costs a map
// read; one not held (registered on another node a moment ago) is read from
// the registry, unless the registry did not know it either since the last
// reload. ErrUnknown when there is none.
func (d *Directory) Lookup(ctx context.Context, clientID, host string) (*Tenant, error) {
	if d.home != nil && clientID == d.home.ClientID {
		return d.home, nil
	}
	if !ValidClientID(clientID) || !ValidHost(host) {
		return nil, ErrUnknown
	}
	k := pair{clientID, host}
	d.mu.RLock()
	t, ok := d.tenants[k]
	_, missed := d.misses[k]
	d.mu.RUnlock()
	switch {
	case ok:
		return t, nil
	case missed:
		return nil, ErrUnknown
	}
	if _, err := d.reg.Tenant(ctx, clientID, host); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			d.mu.Lock()
			if len(d.misses) < maxMisses {
				d.misses[k] = struct{}{}
			}
			d.mu.Unlock()
			return nil, ErrUnknown
		}
		return nil, fmt.Errorf("tenant lookup: %w", err)
	}
	return d.hold(k), nil
}

// hold adds the tenant k to the map, or returns the one already there.
func (d *Directory) hold(k pair) *Tenant {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.tenants[k]; ok {
		return t
	}
	t := newTenant(d.global, d.algo, k.clientID, k.host)
	d.tenants[k] = t
	delete(d.misses, k)
	return t
}

// Add stores the tenant (or updates its origin) and serves it at once.
func (d *Directory) Add(ctx context.Context, clientID, host, origin string) (*Tenant, error) {
	// The home portal's client id is taken: it signs with the server's
	// own key, which no registered portal may hold.
	if !ValidClientID(clientID) || !ValidHost(host) || (d.home != nil && clientID == d.home.ClientID) {
		return nil, ErrInvalid
	}
	if _, err := d.reg.PutTenant(ctx, store.Tenant{ClientID: clientID, Host: host, Origin: origin}); err != nil {
		return nil, fmt.Errorf("add tenant: %w", err)
	}
	return d.hold(pair{clientID, host}), nil
}

// Remove deletes the tenant and stops serving it here (OnRemove); other
// nodes follow on their next reload. ErrUnknown if there is none.
func (d *Directory) Remove(ctx context.Context, clientID, host string) error {
	if err := d.reg.DeleteTenant(ctx, clientID, host); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrUnknown
		}
		return fmt.Errorf("remove tenant: %w", err)
	}
	k := pair{clientID, host}
	d.mu.Lock()
	t, ok := d.tenants[k]
	delete(d.tenants, k)
	fns := d.onRemove
	d.mu.Unlock()
	if ok {
		for _, fn := range fns {
			fn(t)
		}
	}
	return nil
}

// Len is the number of tenants held (the home tenant not counted).
func (d *Directory) Len() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.tenants)
}
