package cli

// The tenant commands manage shared mode's portals (docs/shared-mode.md)
// in the registry a shared-mode server reads. A running server notices a
// change within --tenant-reload and cuts the connections of a removed
// tenant.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/tenant"
)

func tenantGroup() group {
	return group{
		name:    "tenant",
		summary: "add, list and remove the portals of a shared-mode server",
		subs: []subcommand{
			{"add", "serve a portal (client id and host); prints the security key it signs with", (*runner).tenantAdd},
			{"list", "list the portals served", (*runner).tenantList},
			{"remove", "stop serving a portal and cut its connections", (*runner).tenantRemove},
		},
		examples: tenantAddExamples + tenantListExamples + tenantRemoveExamples,
	}
}

func (r *runner) tenant(ctx context.Context, args []string) int {
	return r.runGroup(ctx, tenantGroup(), args)
}

// tenantJSON is a tenant as the commands print it.
type tenantJSON struct {
	ClientID    string    `json:"client_id"`
	Host        string    `json:"host"`
	SecurityKey string    `json:"security_key,omitempty"`
	Origin      string    `json:"origin"`
	CreatedAt   time.Time `json:"created_at"`
}

func toTenantJSON(t store.Tenant, key string) tenantJSON {
	return tenantJSON{ClientID: t.ClientID, Host: t.Host, SecurityKey: key, Origin: t.Origin, CreatedAt: t.CreatedAt.UTC()}
}

// tenantFlags are --client-id and --host, which name a tenant.
func tenantFlags(fs interface {
	StringVar(p *string, name, value, usage string)
}) (clientID, host *string) {
	clientID, host = new(string), new(string)
	fs.StringVar(clientID, "client-id", "", "the portal's client `ID`: its public licence hash, 32 lower-case letters and digits (required)")
	fs.StringVar(host, "host", "", "the `HOST` name the portal reaches this server by, as in its Host header, without port (required)")
	return clientID, host
}

func checkTenantFlags(clientID, host string) error {
	if !tenant.ValidClientID(clientID) {
		return fmt.Errorf("--client-id %q: want 32 lower-case letters and digits", clientID)
	}
	if !tenant.ValidHost(host) {
		return fmt.Errorf("--host %q: want a host name of 2 to 32 lower-case letters, digits, dots and dashes", host)
	}
	return nil
}

// tenantKey derives a tenant's security key from the server's key.
func (r *runner) tenantKey(reg *registry, clientID, host string) (string, error) {
	global, err := server.SignatureKey(reg.cfg, slog.New(slog.NewTextHandler(r.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return "", fmt.Errorf("signature key: %w", err)
	}
	return tenant.DeriveKey(global, clientID, host), nil
}

const tenantAddExamples = `  pushpull tenant add --client-id 0123456789abcdef0123456789abcdef --host push.example.com
  pushpull tenant add --client-id 0123456789abcdef0123456789abcdef --host push.example.com --json | jq -r .security_key
`

func (r *runner) tenantAdd(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("tenant add")
	clientID, host := tenantFlags(fs)
	help := helpWriter(fs, "pushpull tenant add --client-id ID --host HOST [--json] [--data-dir DIR] [--config FILE] [--redis URL]",
		"Serves a portal in shared mode and prints the security key it signs its\nchannels, requests and tokens with (derived from the server's key; enter it\nin the portal's push server settings). Adding an existing portal again\nprints the same key.", tenantAddExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	*host = strings.ToLower(*host)
	if err := checkTenantFlags(*clientID, *host); err != nil {
		return r.usageError(fs.Name(), "%v", err)
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		key, err := r.tenantKey(reg, *clientID, *host)
		if err != nil {
			return err
		}
		t, err := reg.st.PutTenant(ctx, store.Tenant{ClientID: *clientID, Host: *host, Origin: store.TenantOperator})
		if err != nil {
			return fmt.Errorf("add tenant: %w", err)
		}
		return r.emit(o.json, toTenantJSON(t, key), func(w io.Writer) {
			fmt.Fprintf(w, "client_id:    %s\nhost:         %s\nsecurity_key: %s\n", t.ClientID, t.Host, key)
		})
	})
}

const tenantListExamples = `  pushpull tenant list
  pushpull tenant list --keys --json | jq -r '.tenants[] | .client_id + " " + .security_key'
`

func (r *runner) tenantList(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("tenant list")
	keys := fs.Bool("keys", false, "show each portal's security key too")
	help := helpWriter(fs, "pushpull tenant list [--keys] [--json] [--data-dir DIR] [--config FILE] [--redis URL]",
		"Lists the portals a shared-mode server serves, by client id and host.", tenantListExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		list, err := reg.st.ListTenants(ctx)
		if err != nil {
			return fmt.Errorf("list tenants: %w", err)
		}
		out := struct {
			Tenants []tenantJSON `json:"tenants"`
		}{Tenants: make([]tenantJSON, 0, len(list))}
		for _, t := range list {
			key := ""
			if *keys {
				if key, err = r.tenantKey(reg, t.ClientID, t.Host); err != nil {
					return err
				}
			}
			out.Tenants = append(out.Tenants, toTenantJSON(t, key))
		}
		return r.emit(o.json, out, func(w io.Writer) {
			if len(list) == 0 {
				fmt.Fprintln(w, "no tenants; add one with: pushpull tenant add --client-id ID --host HOST")
				return
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			head := "CLIENT_ID\tHOST\tORIGIN\tCREATED"
			if *keys {
				head += "\tSECURITY_KEY"
			}
			fmt.Fprintln(tw, head)
			for _, t := range out.Tenants {
				line := fmt.Sprintf("%s\t%s\t%s\t%s", t.ClientID, t.Host, t.Origin, t.CreatedAt.Format(time.RFC3339))
				if *keys {
					line += "\t" + t.SecurityKey
				}
				fmt.Fprintln(tw, line)
			}
			_ = tw.Flush()
		})
	})
}

const tenantRemoveExamples = `  pushpull tenant remove --client-id 0123456789abcdef0123456789abcdef --host push.example.com
`

func (r *runner) tenantRemove(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("tenant remove")
	clientID, host := tenantFlags(fs)
	help := helpWriter(fs, "pushpull tenant remove --client-id ID --host HOST [--json] [--data-dir DIR] [--config FILE] [--redis URL]",
		"Stops serving a portal: running servers cut its connections within\n--tenant-reload and refuse its requests from then on (4036, 4025).", tenantRemoveExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	*host = strings.ToLower(*host)
	if err := checkTenantFlags(*clientID, *host); err != nil {
		return r.usageError(fs.Name(), "%v", err)
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		err := reg.st.DeleteTenant(ctx, *clientID, *host)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no tenant %s on host %s", *clientID, *host)
		}
		if err != nil {
			return fmt.Errorf("remove tenant: %w", err)
		}
		out := struct {
			ClientID string `json:"client_id"`
			Host     string `json:"host"`
			Removed  bool   `json:"removed"`
		}{*clientID, *host, true}
		return r.emit(o.json, out, func(w io.Writer) {
			fmt.Fprintf(w, "removed %s on %s\n", *clientID, *host)
		})
	})
}
