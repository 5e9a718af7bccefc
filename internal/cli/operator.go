package cli

// Operator commands: app, user, token and webhook manage the registry that
// `pushpull serve` uses (the SQLite file in its data dir). They can run
// while the server does: the store uses WAL and a busy timeout.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/store"
)

// subcommand is one leaf of an operator command group, e.g. "app create".
type subcommand struct {
	name    string
	summary string
	run     func(r *runner, ctx context.Context, args []string) int
}

// group is an operator command with subcommands.
type group struct {
	name     string
	summary  string
	subs     []subcommand
	examples string
}

func appGroup() group {
	return group{
		name:    "app",
		summary: "register and list REST applications",
		subs: []subcommand{
			{"create", "register an application; prints its client_id and client_secret", (*runner).appCreate},
			{"list", "list the registered applications", (*runner).appList},
		},
		examples: appCreateExamples + appListExamples,
	}
}

func userGroup() group {
	return group{
		name:    "user",
		summary: "add or update portal users",
		subs: []subcommand{
			{"add", "create or update a user", (*runner).userAdd},
		},
		examples: userAddExamples,
	}
}

func tokenGroup() group {
	return group{
		name:    "token",
		summary: "issue and revoke OAuth tokens and authorization codes",
		subs: []subcommand{
			{"issue", "issue an access/refresh token pair for a user of an application", (*runner).tokenIssue},
			{"code", "mint an authorization code (valid 30s) for a user of an application", (*runner).tokenCode},
			{"revoke", "revoke an access token and its refresh token", (*runner).tokenRevoke},
		},
		examples: tokenIssueExamples + tokenCodeExamples + tokenRevokeExamples,
	}
}

func webhookGroup() group {
	return group{
		name:    "webhook",
		summary: "create incoming webhooks",
		subs: []subcommand{
			{"create", "create a webhook for a user; prints its URL", (*runner).webhookCreate},
		},
		examples: webhookCreateExamples,
	}
}

func (r *runner) app(ctx context.Context, args []string) int {
	return r.runGroup(ctx, appGroup(), args)
}

func (r *runner) user(ctx context.Context, args []string) int {
	return r.runGroup(ctx, userGroup(), args)
}

func (r *runner) token(ctx context.Context, args []string) int {
	return r.runGroup(ctx, tokenGroup(), args)
}

func (r *runner) webhook(ctx context.Context, args []string) int {
	return r.runGroup(ctx, webhookGroup(), args)
}

func (r *runner) runGroup(ctx context.Context, g group, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(r.stderr, "pushpull %s: missing subcommand\n\n", g.name)
		writeGroupHelp(r.stderr, g)
		return exitUsage
	}
	if isHelpFlag(args[0]) || args[0] == "help" {
		writeGroupHelp(r.stdout, g)
		return exitOK
	}
	for _, s := range g.subs {
		if s.name == args[0] {
			return s.run(r, ctx, args[1:])
		}
	}
	fmt.Fprintf(r.stderr, "pushpull %s: unknown subcommand %q\n\n", g.name, args[0])
	writeGroupHelp(r.stderr, g)
	return exitUsage
}

func writeGroupHelp(w io.Writer, g group) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: pushpull %s <subcommand> [flags]\n\nThe %s commands %s\nin the registry of \"pushpull serve\" (registry.db in its data dir).\nThey may run while the server does.\n\nSubcommands:\n", g.name, g.name, g.summary)
	for _, s := range g.subs {
		fmt.Fprintf(&b, "  %-8s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(&b, "\nRun \"pushpull %s <subcommand> --help\" for its flags.\n\nExamples:\n%s", g.name, g.examples)
	_, _ = io.WriteString(w, b.String())
}

// opFlags are the flags every operator subcommand takes: where the registry
// is (as for serve) and the output format.
type opFlags struct {
	dataDir    string
	publicURL  string
	configPath string
	json       bool
	// redis and redisPrefix are only read through loadConfig.
	redis       string
	redisPrefix string
}

func newOpFlagSet(name string) (*flag.FlagSet, *opFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	o := &opFlags{}
	fs.StringVar(&o.dataDir, "data-dir", "", "the server's data `DIR`, holding registry.db (env PUSHPULL_DATA_DIR; default ./data)")
	fs.StringVar(&o.publicURL, "public-url", "", "how clients reach the server (`URL`), for webhook URLs and the portal domain (env PUSHPULL_PUBLIC_URL; default: the one the server last started with on the data dir)")
	fs.StringVar(&o.configPath, config.ConfigFlag, "", "the server's JSON config `FILE` (env PUSHPULL_CONFIG)")
	fs.StringVar(&o.redis, "redis", "", "the cluster's Redis `URL`, whose registry to use instead of registry.db (env PUSHPULL_REDIS)")
	fs.StringVar(&o.redisPrefix, "redis-prefix", "", "the cluster's key `PREFIX` in Redis (env PUSHPULL_REDIS_PREFIX; default pushpull)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of text")
	return fs, o
}

// helpWriter returns the --help printer of a subcommand.
func helpWriter(fs *flag.FlagSet, usage, about, examples string) func(io.Writer) {
	return func(w io.Writer) {
		_, _ = fmt.Fprintf(w, "Usage: %s\n\n%s\n\nFlags:\n", usage, about)
		writeFlags(w, fs)
		_, _ = fmt.Fprintf(w, "\nExamples:\n%s", examples)
	}
}

// registry is the opened store and what the commands need along with it.
type registry struct {
	cfg    config.Config
	st     store.Store
	portal store.Portal
	auth   *auth.Service
}

// loadConfig builds the server configuration from the given location flags,
// the environment and the config file, exactly as serve would. Without a
// --public-url from any of them it takes the one the server last started
// with on the same data dir, so that printed URLs are the ones clients use.
func (r *runner) loadConfig(fs *flag.FlagSet, o *opFlags) (config.Config, error) {
	var args []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data-dir", "public-url", "redis", "redis-prefix", config.ConfigFlag:
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	cfg, err := config.Load(args, r.getenv, r.readFile)
	if err != nil {
		return config.Config{}, err
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = server.RecordedPublicURL(cfg)
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

// withRegistry loads the configuration, opens the registry, runs fn and
// closes the registry. A bad configuration is exitUsage; an error of fn or
// of the store is exitFailure.
func (r *runner) withRegistry(ctx context.Context, fs *flag.FlagSet, o *opFlags, fn func(reg *registry) error) int {
	cmd := fs.Name()
	cfg, err := r.loadConfig(fs, o)
	if err != nil {
		return r.usageError(cmd, "%v", err)
	}
	st, closeRegistry, err := server.OpenRegistry(ctx, cfg)
	if err != nil {
		return r.failure(cmd, fmt.Errorf("registry: %w", err))
	}
	portal, err := st.DefaultPortal(ctx)
	if err == nil {
		reg := &registry{
			cfg: cfg, st: st, portal: portal,
			auth: auth.New(st, auth.Options{BaseURL: server.PublicURL(cfg)}),
		}
		err = fn(reg)
	} else {
		err = fmt.Errorf("registry: portal: %w", err)
	}
	if cerr := closeRegistry(); cerr != nil && err == nil {
		err = fmt.Errorf("registry: close: %w", cerr)
	}
	if err != nil {
		return r.failure(cmd, err)
	}
	return exitOK
}

// emit prints v as one JSON object when asJSON, else text.
func (r *runner) emit(asJSON bool, v any, text func(w io.Writer)) error {
	if asJSON {
		enc := json.NewEncoder(r.stdout)
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("write JSON: %w", err)
		}
		return nil
	}
	text(r.stdout)
	return nil
}

// parseScopes splits a comma-separated scope list.
func parseScopes(s string) ([]string, error) {
	var scopes []string
	seen := make(map[string]bool)
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" || seen[p] {
			continue
		}
		if strings.ContainsAny(p, " \t\r\n") {
			return nil, fmt.Errorf("invalid scope %q", p)
		}
		seen[p] = true
		scopes = append(scopes, p)
	}
	if len(scopes) == 0 {
		return nil, errors.New("empty scope list")
	}
	return scopes, nil
}

// noArgs refuses positional arguments after the flags.
// parseNoArgs parses the flags of a command that takes no arguments.
func (r *runner) parseNoArgs(fs *flag.FlagSet, help func(io.Writer), args []string) (int, bool) {
	if code, ok := r.parseFlags(fs, help, args); !ok {
		return code, false
	}
	return r.noArgs(fs)
}

func (r *runner) noArgs(fs *flag.FlagSet) (int, bool) {
	if fs.NArg() > 0 {
		return r.usageError(fs.Name(), "unexpected argument %q", fs.Arg(0)), false
	}
	return exitOK, true
}

// appJSON is an application as the operator commands print it.
type appJSON struct {
	ID           int64     `json:"id"`
	ClientID     string    `json:"client_id"`
	ClientSecret string    `json:"client_secret,omitempty"` // app create only: the registry keeps its hash
	Name         string    `json:"name"`
	Scopes       []string  `json:"scopes"`
	CreatedAt    time.Time `json:"created_at"`
}

func toAppJSON(a store.App) appJSON {
	return appJSON{
		ID: a.ID, ClientID: a.ClientID, ClientSecret: a.ClientSecret,
		Name: a.Name, Scopes: a.Scopes, CreatedAt: a.CreatedAt.UTC(),
	}
}

const appCreateExamples = `  pushpull app create --name "CRM sync"
  pushpull app create --name bot --scope pull,im --data-dir /var/lib/pushpull --json
`

func (r *runner) appCreate(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("app create")
	name := fs.String("name", "", "the application's `NAME` (required)")
	scope := fs.String("scope", "pull", "comma-separated scope `LIST`")
	help := helpWriter(fs, "pushpull app create --name NAME [--scope pull,...] [--json] [--data-dir DIR] [--public-url URL] [--config FILE]",
		"Registers a REST application and prints its client_id and client_secret.\nThe secret is shown only here: the registry keeps only its hash.", appCreateExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	if strings.TrimSpace(*name) == "" {
		return r.usageError(fs.Name(), "--name is required")
	}
	scopes, err := parseScopes(*scope)
	if err != nil {
		return r.usageError(fs.Name(), "--scope: %v", err)
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		a, err := reg.st.CreateApp(ctx, reg.portal.ID, strings.TrimSpace(*name), scopes)
		if err != nil {
			return fmt.Errorf("create application: %w", err)
		}
		return r.emit(o.json, toAppJSON(a), func(w io.Writer) {
			fmt.Fprintf(w, "client_id:     %s\nclient_secret: %s\nname:          %s\nscope:         %s\n",
				a.ClientID, a.ClientSecret, a.Name, strings.Join(a.Scopes, ","))
		})
	})
}

const appListExamples = `  pushpull app list
  pushpull app list --json | jq -r '.apps[].client_id'
`

func (r *runner) appList(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("app list")
	help := helpWriter(fs, "pushpull app list [--json] [--data-dir DIR] [--public-url URL] [--config FILE]",
		"Lists the registered applications in creation order (client secrets are\nshown only by app create: the registry keeps only their hash).", appListExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		apps, err := reg.st.Apps(ctx, reg.portal.ID)
		if err != nil {
			return fmt.Errorf("list applications: %w", err)
		}
		out := struct {
			Apps []appJSON `json:"apps"`
		}{Apps: make([]appJSON, 0, len(apps))}
		for _, a := range apps {
			out.Apps = append(out.Apps, toAppJSON(a))
		}
		return r.emit(o.json, out, func(w io.Writer) {
			if len(apps) == 0 {
				fmt.Fprintln(w, "no applications; create one with: pushpull app create --name NAME")
				return
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLIENT_ID\tNAME\tSCOPE\tCREATED")
			for _, a := range apps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ClientID, a.Name, strings.Join(a.Scopes, ","),
					a.CreatedAt.UTC().Format(time.RFC3339))
			}
			_ = tw.Flush()
		})
	})
}

const userAddExamples = `  pushpull user add --id 1 --admin
  pushpull user add --id 42 --inactive --json
`

func (r *runner) userAdd(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("user add")
	id := fs.Int64("id", 0, "the user's numeric `ID` (required)")
	admin := fs.Bool("admin", false, "the user may target other users")
	inactive := fs.Bool("inactive", false, "the user may not receive or authenticate")
	help := helpWriter(fs, "pushpull user add --id N [--admin] [--inactive] [--json] [--data-dir DIR] [--public-url URL] [--config FILE]",
		"Creates a user, or updates an existing one to exactly the given flags\n(so running it again without --admin takes admin rights away).", userAddExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	if *id <= 0 {
		return r.usageError(fs.Name(), "--id is required and must be a positive number")
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		err := reg.st.PutUser(ctx, store.User{PortalID: reg.portal.ID, ID: *id, Active: !*inactive, Admin: *admin})
		if err != nil {
			return fmt.Errorf("put user %d: %w", *id, err)
		}
		u, err := reg.st.User(ctx, reg.portal.ID, *id)
		if err != nil {
			return fmt.Errorf("read back user %d: %w", *id, err)
		}
		out := struct {
			ID        int64     `json:"id"`
			Active    bool      `json:"active"`
			Admin     bool      `json:"admin"`
			CreatedAt time.Time `json:"created_at"`
		}{u.ID, u.Active, u.Admin, u.CreatedAt.UTC()}
		return r.emit(o.json, out, func(w io.Writer) {
			fmt.Fprintf(w, "user %d: active=%t admin=%t\n", u.ID, u.Active, u.Admin)
		})
	})
}

// grantee looks up an application by client_id and checks that the user
// exists and is active.
func grantee(ctx context.Context, reg *registry, clientID string, userID int64) (store.App, error) {
	var app store.App
	if clientID != "" {
		a, err := reg.st.App(ctx, clientID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && a.PortalID != reg.portal.ID) {
			return store.App{}, fmt.Errorf("unknown application %q (see pushpull app list)", clientID)
		}
		if err != nil {
			return store.App{}, fmt.Errorf("application %q: %w", clientID, err)
		}
		app = a
	}
	u, err := reg.st.User(ctx, reg.portal.ID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return store.App{}, fmt.Errorf("user %d does not exist; add it with: pushpull user add --id %d", userID, userID)
	}
	if err != nil {
		return store.App{}, fmt.Errorf("user %d: %w", userID, err)
	}
	if !u.Active {
		return store.App{}, fmt.Errorf("user %d is inactive; activate it with: pushpull user add --id %d", userID, userID)
	}
	return app, nil
}

// appUserFlags are --app and --user, both required.
func appUserFlags(fs *flag.FlagSet) (clientID *string, userID *int64) {
	clientID = fs.String("app", "", "the application's `CLIENT_ID` (required)")
	userID = fs.Int64("user", 0, "the user's numeric `ID` (required)")
	return clientID, userID
}

func (r *runner) checkAppUser(fs *flag.FlagSet, clientID string, userID int64) (int, bool) {
	if clientID == "" {
		return r.usageError(fs.Name(), "--app is required"), false
	}
	if userID <= 0 {
		return r.usageError(fs.Name(), "--user is required and must be a positive number"), false
	}
	return exitOK, true
}

const tokenIssueExamples = `  pushpull token issue --app local.0123456789abcd.12345678 --user 1
  pushpull token issue --app local.0123456789abcd.12345678 --user 1 --json | jq -r .access_token
`

func (r *runner) tokenIssue(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("token issue")
	clientID, userID := appUserFlags(fs)
	help := helpWriter(fs, "pushpull token issue --app CLIENT_ID --user N [--json] [--data-dir DIR] [--public-url URL] [--config FILE]",
		"Issues an OAuth access token (valid one hour) and refresh token for an active\nuser of an application, as /oauth/token/ would. --json prints the token response.", tokenIssueExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	if code, ok := r.checkAppUser(fs, *clientID, *userID); !ok {
		return code
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		app, err := grantee(ctx, reg, *clientID, *userID)
		if err != nil {
			return err
		}
		tr, err := reg.auth.Issue(ctx, app, *userID)
		if err != nil {
			return fmt.Errorf("issue token: %w", err)
		}
		return r.emit(o.json, tr, func(w io.Writer) {
			fmt.Fprintf(w, "access_token:    %s\nrefresh_token:   %s\nexpires:         %s\nscope:           %s\nclient_endpoint: %s\n",
				tr.AccessToken, tr.RefreshToken, time.Unix(tr.Expires, 0).UTC().Format(time.RFC3339),
				tr.Scope, tr.ClientEndpoint)
		})
	})
}

const tokenCodeExamples = `  pushpull token code --app local.0123456789abcd.12345678 --user 1
  CODE=$(pushpull token code --app local.0123456789abcd.12345678 --user 1 --json | jq -r .code)
`

func (r *runner) tokenCode(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("token code")
	clientID, userID := appUserFlags(fs)
	help := helpWriter(fs, "pushpull token code --app CLIENT_ID --user N [--json] [--data-dir DIR] [--public-url URL] [--config FILE]",
		"Mints an authorization code for an active user of an application. It is\nvalid once, for 30 seconds, at /oauth/token/?grant_type=authorization_code.", tokenCodeExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	if code, ok := r.checkAppUser(fs, *clientID, *userID); !ok {
		return code
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		app, err := grantee(ctx, reg, *clientID, *userID)
		if err != nil {
			return err
		}
		c, err := reg.auth.MintCode(ctx, app, *userID)
		if err != nil {
			return fmt.Errorf("mint code: %w", err)
		}
		expiresIn := int64(time.Until(c.Expires).Round(time.Second) / time.Second)
		out := struct {
			Code      string `json:"code"`
			Expires   int64  `json:"expires"`
			ExpiresIn int64  `json:"expires_in"`
			ClientID  string `json:"client_id"`
			UserID    int64  `json:"user_id"`
		}{c.Code, c.Expires.Unix(), expiresIn, app.ClientID, c.UserID}
		return r.emit(o.json, out, func(w io.Writer) {
			fmt.Fprintf(w, "code:    %s\nexpires: %s (in %ds)\n", c.Code, c.Expires.UTC().Format(time.RFC3339), expiresIn)
		})
	})
}

const tokenRevokeExamples = `  pushpull token revoke 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
`

func (r *runner) tokenRevoke(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("token revoke")
	help := helpWriter(fs, "pushpull token revoke [--json] [--data-dir DIR] [--public-url URL] [--config FILE] ACCESS_TOKEN",
		"Revokes an access token and the refresh token issued with it. Revoking\na revoked token again is not an error.", tokenRevokeExamples)
	if code, ok := r.parseFlags(fs, help, args); !ok {
		return code
	}
	if err := checkNoFlags(fs.Args()); err != nil {
		return r.usageError(fs.Name(), "%v", err)
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return r.usageError(fs.Name(), "want one access token, got %d arguments", fs.NArg())
	}
	access := fs.Arg(0)
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		err := reg.st.RevokeToken(ctx, access)
		if errors.Is(err, store.ErrNotFound) {
			return errors.New("unknown access token")
		}
		if err != nil {
			return fmt.Errorf("revoke token: %w", err)
		}
		out := struct {
			Revoked bool `json:"revoked"`
		}{true}
		return r.emit(o.json, out, func(w io.Writer) { fmt.Fprintln(w, "revoked") })
	})
}

const webhookCreateExamples = `  pushpull webhook create --user 1
  pushpull webhook create --user 1 --app local.0123456789abcd.12345678 --scope pull,im --json
`

func (r *runner) webhookCreate(ctx context.Context, args []string) int {
	fs, o := newOpFlagSet("webhook create")
	userID := fs.Int64("user", 0, "the owner's numeric user `ID` (required)")
	clientID := fs.String("app", "", "bind the webhook to this application `CLIENT_ID`")
	scope := fs.String("scope", "pull", "comma-separated scope `LIST`")
	help := helpWriter(fs, "pushpull webhook create --user N [--app CLIENT_ID] [--scope pull,...] [--json] [--data-dir DIR] [--public-url URL] [--config FILE]",
		"Creates an incoming webhook for an active user and prints its URL,\n<public-url>/rest/<user>/<secret>/, and its secret.", webhookCreateExamples)
	if code, ok := r.parseNoArgs(fs, help, args); !ok {
		return code
	}
	if *userID <= 0 {
		return r.usageError(fs.Name(), "--user is required and must be a positive number")
	}
	scopes, err := parseScopes(*scope)
	if err != nil {
		return r.usageError(fs.Name(), "--scope: %v", err)
	}
	return r.withRegistry(ctx, fs, o, func(reg *registry) error {
		app, err := grantee(ctx, reg, *clientID, *userID)
		if err != nil {
			return err
		}
		wh, err := reg.st.CreateWebhook(ctx, reg.portal.ID, *userID, app.ID, scopes)
		if err != nil {
			return fmt.Errorf("create webhook: %w", err)
		}
		url := server.PublicURL(reg.cfg) + "/rest/" + strconv.FormatInt(wh.UserID, 10) + "/" + wh.Secret + "/"
		out := struct {
			ID       int64    `json:"id"`
			URL      string   `json:"url"`
			Secret   string   `json:"secret"`
			UserID   int64    `json:"user_id"`
			ClientID string   `json:"client_id,omitempty"`
			Scopes   []string `json:"scopes"`
		}{wh.ID, url, wh.Secret, wh.UserID, app.ClientID, wh.Scopes}
		return r.emit(o.json, out, func(w io.Writer) {
			fmt.Fprintf(w, "url:    %s\nsecret: %s\nscope:  %s\n", url, wh.Secret, strings.Join(wh.Scopes, ","))
		})
	})
}
