// Package sqlite is the registry (store.Store) in one SQLite file: the
// default engine, for a single node. It passes the conformance suite in
// package storetest, like the Redis engine.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	moderncsqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/pushpull/pushpull/internal/store"
)

// Store is the store.Store backed by one SQLite file. It is safe for concurrent
// use, also by several processes (the server and the operator CLI) on the
// same file: every write transaction is BEGIN IMMEDIATE, so they queue on
// the busy timeout instead of failing to upgrade a read lock.
type Store struct {
	db     *sql.DB
	domain string
}

var _ store.Store = (*Store)(nil)

// migrations[i] moves the schema from version i to i+1 (PRAGMA user_version).
// Append only; never edit a released step.
//
// Times are Unix nanoseconds (0 = zero time), scope lists are comma-joined
// (Bitrix scopes never contain commas), secrets are hex SHA-256 (HashSecret).
var migrations = []string{
	`
CREATE TABLE portals (
	id         INTEGER PRIMARY KEY,
	member_id  TEXT    NOT NULL UNIQUE,
	domain     TEXT    NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE apps (
	id            INTEGER PRIMARY KEY,
	portal_id     INTEGER NOT NULL REFERENCES portals(id),
	client_id     TEXT    NOT NULL UNIQUE,
	client_secret TEXT    NOT NULL,
	name          TEXT    NOT NULL,
	scopes        TEXT    NOT NULL,
	created_at    INTEGER NOT NULL
);
CREATE INDEX apps_portal ON apps(portal_id, id);
CREATE TABLE users (
	portal_id  INTEGER NOT NULL REFERENCES portals(id),
	id         INTEGER NOT NULL,
	active     INTEGER NOT NULL,
	admin      INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (portal_id, id)
);
CREATE TABLE tokens (
	access_hash     TEXT    PRIMARY KEY,
	refresh_hash    TEXT    NOT NULL UNIQUE,
	portal_id       INTEGER NOT NULL REFERENCES portals(id),
	app_id          INTEGER NOT NULL REFERENCES apps(id),
	user_id         INTEGER NOT NULL,
	scopes          TEXT    NOT NULL,
	access_expires  INTEGER NOT NULL,
	refresh_expires INTEGER NOT NULL,
	revoked         INTEGER NOT NULL,
	created_at      INTEGER NOT NULL
);
CREATE TABLE auth_codes (
	code_hash TEXT    PRIMARY KEY,
	portal_id INTEGER NOT NULL REFERENCES portals(id),
	app_id    INTEGER NOT NULL REFERENCES apps(id),
	user_id   INTEGER NOT NULL,
	scopes    TEXT    NOT NULL,
	expires   INTEGER NOT NULL,
	used      INTEGER NOT NULL
);
CREATE TABLE webhooks (
	id          INTEGER PRIMARY KEY,
	portal_id   INTEGER NOT NULL REFERENCES portals(id),
	user_id     INTEGER NOT NULL,
	app_id      INTEGER REFERENCES apps(id), -- NULL = no application
	secret_hash TEXT    NOT NULL,
	scopes      TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	revoked     INTEGER NOT NULL,
	UNIQUE (user_id, secret_hash)
);
-- app_id 0 = not app-scoped; it is part of the key, so no foreign key.
CREATE TABLE channels (
	portal_id  INTEGER NOT NULL REFERENCES portals(id),
	app_id     INTEGER NOT NULL,
	user_id    INTEGER NOT NULL,
	type       TEXT    NOT NULL,
	private_id TEXT    NOT NULL,
	public_id  TEXT    NOT NULL,
	start      INTEGER NOT NULL,
	end        INTEGER NOT NULL,
	PRIMARY KEY (portal_id, app_id, user_id, type)
);
`,
	`
CREATE TABLE push_jobs (
	id           INTEGER PRIMARY KEY,
	payload      BLOB    NOT NULL,
	attempts     INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL,
	created_at   INTEGER NOT NULL
);
CREATE INDEX push_jobs_due ON push_jobs(next_attempt, id);
`,
	// Client secrets were stored as given; from version 3 only their hash
	// is kept (migrationFuncs[3] hashes the existing ones).
	`ALTER TABLE apps RENAME COLUMN client_secret TO client_secret_hash;`,
	// Shared mode's tenants, and the version that tells caching servers
	// (and the server while the operator CLI edits this file) to reload.
	`
CREATE TABLE tenants (
	client_id  TEXT    NOT NULL,
	host       TEXT    NOT NULL,
	origin     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (client_id, host)
);
CREATE TABLE tenants_version (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	version INTEGER NOT NULL
);
INSERT INTO tenants_version (id, version) VALUES (1, 0);
`,
}

// migrationFuncs[v] runs in the same transaction right after the SQL step
// that reaches version v, for what SQL alone cannot do.
var migrationFuncs = map[int]func(context.Context, *sql.Tx) error{
	3: hashClientSecrets,
}

// hashClientSecrets replaces the plain client secrets of existing apps by
// their hash.
func hashClientSecrets(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, client_secret_hash FROM apps`)
	if err != nil {
		return fmt.Errorf("hash client secrets: %w", err)
	}
	plain := map[int64]string{}
	for rows.Next() {
		var id int64
		var secret string
		if err := rows.Scan(&id, &secret); err != nil {
			rows.Close()
			return fmt.Errorf("hash client secrets: %w", err)
		}
		plain[id] = secret
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("hash client secrets: %w", err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("hash client secrets: %w", err)
	}
	for id, secret := range plain {
		if _, err := tx.ExecContext(ctx, `UPDATE apps SET client_secret_hash = ? WHERE id = ?`, store.HashSecret(secret), id); err != nil {
			return fmt.Errorf("hash client secrets: app %d: %w", id, err)
		}
	}
	return nil
}

// Open opens (creating if needed, mode 0600) the registry file at path
// and brings its schema up to date. domain is the default portal's domain.
func Open(ctx context.Context, path string, domain string) (*Store, error) {
	// Create the file ourselves so it is 0600 from the start; SQLite gives
	// its -wal and -shm files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	q := url.Values{}
	// Pragmas run on every new pooled connection, not once.
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", Opaque: path, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	s := &Store{db: db, domain: domain}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	// Read the version outside a transaction first: an up-to-date registry
	// then opens without taking the write lock, also on a full disk.
	var current int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if current == len(migrations) {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("migrate: schema version %d is newer than this build (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
		if fn := migrationFuncs[i+1]; fn != nil {
			if err := fn(ctx, tx); err != nil {
				return fmt.Errorf("migrate to version %d: %w", i+1, err)
			}
		}
	}
	if version == len(migrations) {
		return nil
	}
	// PRAGMA takes no bind parameters; the value is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("migrate: set version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx share for reading.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func queryDefaultPortal(ctx context.Context, q querier) (p store.Portal, created int64, err error) {
	err = q.QueryRowContext(ctx, `SELECT id, member_id, domain, created_at FROM portals ORDER BY id LIMIT 1`).
		Scan(&p.ID, &p.MemberID, &p.Domain, &created)
	return p, created, err
}

// DefaultPortal implements Store. The default portal is the first one. If
// the store was opened with another domain, the domain is updated: member_id
// is what stays stable across domain changes. The usual case, an existing
// portal with the right domain, is a plain read: every REST call needs the
// portal, and a write transaction there would fail them all on a full disk.
func (s *Store) DefaultPortal(ctx context.Context) (store.Portal, error) {
	p, created, err := queryDefaultPortal(ctx, s.db)
	if err == nil && (s.domain == "" || p.Domain == s.domain) {
		p.CreatedAt = store.DecodeTime(created)
		return p, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return store.Portal{}, fmt.Errorf("store: default portal: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Portal{}, fmt.Errorf("store: default portal: %w", err)
	}
	defer tx.Rollback()
	p, created, err = queryDefaultPortal(ctx, tx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		p.MemberID, err = store.NewChannelID() // same shape: 32 hex
		if err != nil {
			return store.Portal{}, fmt.Errorf("store: default portal: %w", err)
		}
		p.Domain = s.domain
		p.CreatedAt = time.Now()
		res, err := tx.ExecContext(ctx, `INSERT INTO portals (member_id, domain, created_at) VALUES (?, ?, ?)`,
			p.MemberID, p.Domain, store.EncodeTime(p.CreatedAt))
		if err != nil {
			return store.Portal{}, fmt.Errorf("store: default portal: create: %w", err)
		}
		if p.ID, err = res.LastInsertId(); err != nil {
			return store.Portal{}, fmt.Errorf("store: default portal: create: %w", err)
		}
	case err != nil:
		return store.Portal{}, fmt.Errorf("store: default portal: %w", err)
	default:
		p.CreatedAt = store.DecodeTime(created)
		if s.domain != "" && p.Domain != s.domain {
			if _, err := tx.ExecContext(ctx, `UPDATE portals SET domain = ? WHERE id = ?`, s.domain, p.ID); err != nil {
				return store.Portal{}, fmt.Errorf("store: default portal: update domain: %w", err)
			}
			p.Domain = s.domain
		}
	}
	if err := tx.Commit(); err != nil {
		return store.Portal{}, fmt.Errorf("store: default portal: %w", err)
	}
	return p, nil
}

// CreateApp implements Store.
func (s *Store) CreateApp(ctx context.Context, portalID int64, name string, scopes []string) (store.App, error) {
	a := store.App{PortalID: portalID, Name: name, Scopes: store.CloneScopes(scopes), CreatedAt: time.Now()}
	var err error
	if a.ClientID, err = store.NewClientID(); err != nil {
		return store.App{}, fmt.Errorf("store: create app: %w", err)
	}
	if a.ClientSecret, err = store.NewClientSecret(); err != nil {
		return store.App{}, fmt.Errorf("store: create app: %w", err)
	}
	a.ClientSecretHash = store.HashSecret(a.ClientSecret)
	res, err := s.db.ExecContext(ctx, `INSERT INTO apps (portal_id, client_id, client_secret_hash, name, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		a.PortalID, a.ClientID, a.ClientSecretHash, a.Name, store.JoinScopes(a.Scopes), store.EncodeTime(a.CreatedAt))
	if err != nil {
		return store.App{}, fmt.Errorf("store: create app: %w", dbErr(err))
	}
	if a.ID, err = res.LastInsertId(); err != nil {
		return store.App{}, fmt.Errorf("store: create app: %w", err)
	}
	return a, nil
}

const appColumns = `id, portal_id, client_id, client_secret_hash, name, scopes, created_at`

func scanApp(sc interface{ Scan(...any) error }) (store.App, error) {
	var a store.App
	var scopes string
	var created int64
	if err := sc.Scan(&a.ID, &a.PortalID, &a.ClientID, &a.ClientSecretHash, &a.Name, &scopes, &created); err != nil {
		return store.App{}, err
	}
	a.Scopes = store.SplitScopes(scopes)
	a.CreatedAt = store.DecodeTime(created)
	return a, nil
}

// App implements Store.
func (s *Store) App(ctx context.Context, clientID string) (store.App, error) {
	a, err := scanApp(s.db.QueryRowContext(ctx, `SELECT `+appColumns+` FROM apps WHERE client_id = ?`, clientID))
	if err != nil {
		return store.App{}, fmt.Errorf("store: app %q: %w", clientID, dbErr(err))
	}
	return a, nil
}

// Apps implements Store.
func (s *Store) Apps(ctx context.Context, portalID int64) ([]store.App, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+appColumns+` FROM apps WHERE portal_id = ? ORDER BY id`, portalID)
	if err != nil {
		return nil, fmt.Errorf("store: list apps: %w", err)
	}
	defer rows.Close()
	var apps []store.App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list apps: %w", err)
		}
		apps = append(apps, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list apps: %w", err)
	}
	return apps, nil
}

// PutUser implements Store.
func (s *Store) PutUser(ctx context.Context, u store.User) error {
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (portal_id, id, active, admin, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (portal_id, id) DO UPDATE SET active = excluded.active, admin = excluded.admin`,
		u.PortalID, u.ID, u.Active, u.Admin, store.EncodeTime(u.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: put user %d: %w", u.ID, dbErr(err))
	}
	return nil
}

// User implements Store.
func (s *Store) User(ctx context.Context, portalID, userID int64) (store.User, error) {
	u := store.User{PortalID: portalID, ID: userID}
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT active, admin, created_at FROM users WHERE portal_id = ? AND id = ?`, portalID, userID).
		Scan(&u.Active, &u.Admin, &created)
	if err != nil {
		return store.User{}, fmt.Errorf("store: user %d: %w", userID, dbErr(err))
	}
	u.CreatedAt = store.DecodeTime(created)
	return u, nil
}

func insertToken(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, t store.Token) error {
	_, err := ex.ExecContext(ctx, `INSERT INTO tokens (access_hash, refresh_hash, portal_id, app_id, user_id, scopes, access_expires, refresh_expires, revoked, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		store.HashSecret(t.AccessToken), store.HashSecret(t.RefreshToken), t.PortalID, t.AppID, t.UserID, store.JoinScopes(t.Scopes),
		store.EncodeTime(t.AccessExpires), store.EncodeTime(t.RefreshExpires), t.Revoked, store.EncodeTime(t.CreatedAt))
	return dbErr(err)
}

// CreateToken implements Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) (store.Token, error) {
	t, err := store.FillToken(t)
	if err != nil {
		return store.Token{}, fmt.Errorf("store: create token: %w", err)
	}
	if err := insertToken(ctx, s.db, t); err != nil {
		return store.Token{}, fmt.Errorf("store: create token: %w", err)
	}
	return t, nil
}

func (s *Store) tokenBy(ctx context.Context, column, hash string) (store.Token, error) {
	var t store.Token
	var scopes string
	var access, refresh, created int64
	// column is one of two constants, never input.
	err := s.db.QueryRowContext(ctx, `SELECT portal_id, app_id, user_id, scopes, access_expires, refresh_expires, revoked, created_at FROM tokens WHERE `+column+` = ?`, hash).
		Scan(&t.PortalID, &t.AppID, &t.UserID, &scopes, &access, &refresh, &t.Revoked, &created)
	if err != nil {
		return store.Token{}, dbErr(err)
	}
	t.Scopes = store.SplitScopes(scopes)
	t.AccessExpires, t.RefreshExpires, t.CreatedAt = store.DecodeTime(access), store.DecodeTime(refresh), store.DecodeTime(created)
	return t, nil
}

// TokenByAccess implements Store. RefreshToken is left empty (only its hash
// is stored).
func (s *Store) TokenByAccess(ctx context.Context, access string) (store.Token, error) {
	t, err := s.tokenBy(ctx, "access_hash", store.HashSecret(access))
	if err != nil {
		return store.Token{}, fmt.Errorf("store: token by access: %w", err)
	}
	t.AccessToken = access
	return t, nil
}

// TokenByRefresh implements Store. AccessToken is left empty.
func (s *Store) TokenByRefresh(ctx context.Context, refresh string) (store.Token, error) {
	t, err := s.tokenBy(ctx, "refresh_hash", store.HashSecret(refresh))
	if err != nil {
		return store.Token{}, fmt.Errorf("store: token by refresh: %w", err)
	}
	t.RefreshToken = refresh
	return t, nil
}

// RotateRefresh implements Store. The conditional UPDATE is the gate: of
// concurrent callers only one sees a row change.
func (s *Store) RotateRefresh(ctx context.Context, oldRefresh string, next store.Token) (store.Token, error) {
	next, err := store.FillToken(next)
	if err != nil {
		return store.Token{}, fmt.Errorf("store: rotate refresh: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Token{}, fmt.Errorf("store: rotate refresh: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE refresh_hash = ? AND revoked = 0`, store.HashSecret(oldRefresh))
	if err != nil {
		return store.Token{}, fmt.Errorf("store: rotate refresh: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return store.Token{}, fmt.Errorf("store: rotate refresh: %w", err)
	} else if n == 0 {
		return store.Token{}, fmt.Errorf("store: rotate refresh: %w", store.ErrNotFound)
	}
	if err := insertToken(ctx, tx, next); err != nil {
		return store.Token{}, fmt.Errorf("store: rotate refresh: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Token{}, fmt.Errorf("store: rotate refresh: %w", err)
	}
	return next, nil
}

// RevokeToken implements Store.
func (s *Store) RevokeToken(ctx context.Context, access string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE access_hash = ?`, store.HashSecret(access))
	if err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	} else if n == 0 {
		return fmt.Errorf("store: revoke token: %w", store.ErrNotFound)
	}
	return nil
}

// CreateAuthCode implements Store.
func (s *Store) CreateAuthCode(ctx context.Context, c store.AuthCode) (store.AuthCode, error) {
	if c.Code == "" {
		var err error
		if c.Code, err = store.NewToken(); err != nil {
			return store.AuthCode{}, fmt.Errorf("store: create auth code: %w", err)
		}
	}
	c.Scopes = store.CloneScopes(c.Scopes)
	_, err := s.db.ExecContext(ctx, `INSERT INTO auth_codes (code_hash, portal_id, app_id, user_id, scopes, expires, used) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		store.HashSecret(c.Code), c.PortalID, c.AppID, c.UserID, store.JoinScopes(c.Scopes), store.EncodeTime(c.Expires), c.Used)
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("store: create auth code: %w", dbErr(err))
	}
	return c, nil
}

// UseAuthCode implements Store. One conditional UPDATE ... RETURNING both
// checks and consumes the code, so it cannot be used twice concurrently.
func (s *Store) UseAuthCode(ctx context.Context, code string, appID int64, now time.Time) (store.AuthCode, error) {
	c := store.AuthCode{Code: code, Used: true}
	var scopes string
	var expires int64
	err := s.db.QueryRowContext(ctx, `UPDATE auth_codes SET used = 1 WHERE code_hash = ? AND app_id = ? AND used = 0 AND expires > ?
RETURNING portal_id, app_id, user_id, scopes, expires`, store.HashSecret(code), appID, store.EncodeTime(now)).
		Scan(&c.PortalID, &c.AppID, &c.UserID, &scopes, &expires)
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("store: use auth code: %w", dbErr(err))
	}
	c.Scopes = store.SplitScopes(scopes)
	c.Expires = store.DecodeTime(expires)
	return c, nil
}

// CreateWebhook implements Store.
func (s *Store) CreateWebhook(ctx context.Context, portalID, userID, appID int64, scopes []string) (store.Webhook, error) {
	w := store.Webhook{PortalID: portalID, UserID: userID, AppID: appID, Scopes: store.CloneScopes(scopes), CreatedAt: time.Now()}
	var err error
	if w.Secret, err = store.NewWebhookSecret(); err != nil {
		return store.Webhook{}, fmt.Errorf("store: create webhook: %w", err)
	}
	var app any // NULL, so that the foreign key does not apply to "no app"
	if appID != 0 {
		app = appID
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO webhooks (portal_id, user_id, app_id, secret_hash, scopes, created_at, revoked) VALUES (?, ?, ?, ?, ?, ?, 0)`,
		w.PortalID, w.UserID, app, store.HashSecret(w.Secret), store.JoinScopes(w.Scopes), store.EncodeTime(w.CreatedAt))
	if err != nil {
		return store.Webhook{}, fmt.Errorf("store: create webhook: %w", dbErr(err))
	}
	if w.ID, err = res.LastInsertId(); err != nil {
		return store.Webhook{}, fmt.Errorf("store: create webhook: %w", err)
	}
	return w, nil
}

// Webhook implements Store.
func (s *Store) Webhook(ctx context.Context, userID int64, secret string) (store.Webhook, error) {
	w := store.Webhook{UserID: userID, Secret: secret}
	var app sql.NullInt64
	var scopes string
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, portal_id, app_id, scopes, created_at, revoked FROM webhooks WHERE user_id = ? AND secret_hash = ?`,
		userID, store.HashSecret(secret)).Scan(&w.ID, &w.PortalID, &app, &scopes, &created, &w.Revoked)
	if err != nil {
		return store.Webhook{}, fmt.Errorf("store: webhook of user %d: %w", userID, dbErr(err))
	}
	w.AppID = app.Int64
	w.Scopes = store.SplitScopes(scopes)
	w.CreatedAt = store.DecodeTime(created)
	return w, nil
}

// ChannelFor implements Store. A channel that exists and has not expired is
// a plain read, so that config.get keeps working when writes fail (a full
// disk). Otherwise the read-check-replace runs in one IMMEDIATE transaction,
// so concurrent callers are serialized and the later ones see the fresh
// channel.
func (s *Store) ChannelFor(ctx context.Context, key store.ChannelKey, now time.Time, ttl time.Duration) (store.Channel, *store.Channel, error) {
	if cur, found, err := readChannel(ctx, s.db, key); err != nil {
		return store.Channel{}, nil, fmt.Errorf("store: channel: %w", err)
	} else if found && !cur.Expired(now) {
		return cur, nil, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Channel{}, nil, fmt.Errorf("store: channel: %w", err)
	}
	defer tx.Rollback()
	cur, replaced, err := channelForTx(ctx, tx, key, now, ttl)
	if err != nil {
		return store.Channel{}, nil, fmt.Errorf("store: channel: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Channel{}, nil, fmt.Errorf("store: channel: %w", err)
	}
	return cur, replaced, nil
}

// readChannel returns the stored channel of key, if there is one.
func readChannel(ctx context.Context, q querier, key store.ChannelKey) (store.Channel, bool, error) {
	ch := store.Channel{PortalID: key.PortalID, AppID: key.AppID, UserID: key.UserID, Type: key.Type}
	var start, end int64
	err := q.QueryRowContext(ctx, `SELECT private_id, public_id, start, end FROM channels WHERE portal_id = ? AND app_id = ? AND user_id = ? AND type = ?`,
		key.PortalID, key.AppID, key.UserID, key.Type).Scan(&ch.PrivateID, &ch.PublicID, &start, &end)
	if errors.Is(err, sql.ErrNoRows) {
		return ch, false, nil
	}
	if err != nil {
		return store.Channel{}, false, err
	}
	ch.Start, ch.End = store.DecodeTime(start), store.DecodeTime(end)
	return ch, true, nil
}

func channelForTx(ctx context.Context, tx *sql.Tx, key store.ChannelKey, now time.Time, ttl time.Duration) (store.Channel, *store.Channel, error) {
	old, found, err := readChannel(ctx, tx, key)
	if err != nil {
		return store.Channel{}, nil, err
	}
	if found && !old.Expired(now) {
		return old, nil, nil
	}
	cur := store.Channel{PortalID: key.PortalID, AppID: key.AppID, UserID: key.UserID, Type: key.Type, Start: now, End: now.Add(ttl)}
	if cur.PrivateID, err = store.NewChannelID(); err != nil {
		return store.Channel{}, nil, err
	}
	if key.UserID != 0 { // shared channels have no public id
		if cur.PublicID, err = store.NewChannelID(); err != nil {
			return store.Channel{}, nil, err
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO channels (portal_id, app_id, user_id, type, private_id, public_id, start, end) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (portal_id, app_id, user_id, type) DO UPDATE SET private_id = excluded.private_id, public_id = excluded.public_id, start = excluded.start, end = excluded.end`,
		cur.PortalID, cur.AppID, cur.UserID, cur.Type, cur.PrivateID, cur.PublicID, store.EncodeTime(cur.Start), store.EncodeTime(cur.End))
	if err != nil {
		return store.Channel{}, nil, dbErr(err)
	}
	if !found {
		return cur, nil, nil
	}
	return cur, &old, nil
}

// PublicChannels implements Store. When every channel exists and is valid
// the answer is read without a write transaction (see ChannelFor);
// otherwise it is built in one transaction.
func (s *Store) PublicChannels(ctx context.Context, portalID, appID int64, userIDs []int64, now time.Time, ttl time.Duration) (map[int64]store.Channel, []store.Channel, error) {
	if chans, ok, err := s.freshPublicChannels(ctx, portalID, appID, userIDs, now); err != nil {
		return nil, nil, fmt.Errorf("store: public channels: %w", err)
	} else if ok {
		return chans, nil, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("store: public channels: %w", err)
	}
	defer tx.Rollback()
	typ := store.TypePrivate
	if appID != 0 {
		if err := tx.QueryRowContext(ctx, `SELECT client_id FROM apps WHERE id = ? AND portal_id = ?`, appID, portalID).Scan(&typ); err != nil {
			return nil, nil, fmt.Errorf("store: public channels: app %d: %w", appID, dbErr(err))
		}
	}
	channels := make(map[int64]store.Channel, len(userIDs))
	var replaced []store.Channel
	for _, id := range userIDs {
		if _, dup := channels[id]; dup || id == 0 {
			continue
		}
		cur, old, err := channelForTx(ctx, tx, store.ChannelKey{PortalID: portalID, AppID: appID, UserID: id, Type: typ}, now, ttl)
		if err != nil {
			return nil, nil, fmt.Errorf("store: public channels: user %d: %w", id, err)
		}
		channels[id] = cur
		if old != nil {
			replaced = append(replaced, *old)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("store: public channels: %w", err)
	}
	return channels, replaced, nil
}

// freshPublicChannels reads the users' channels; ok is false when one of
// them is missing or expired, which needs PublicChannels' transaction.
func (s *Store) freshPublicChannels(ctx context.Context, portalID, appID int64, userIDs []int64, now time.Time) (map[int64]store.Channel, bool, error) {
	typ := store.TypePrivate
	if appID != 0 {
		err := s.db.QueryRowContext(ctx, `SELECT client_id FROM apps WHERE id = ? AND portal_id = ?`, appID, portalID).Scan(&typ)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, nil // the transaction reports it
		}
		if err != nil {
			return nil, false, fmt.Errorf("app %d: %w", appID, err)
		}
	}
	channels := make(map[int64]store.Channel, len(userIDs))
	for _, id := range userIDs {
		if _, dup := channels[id]; dup || id == 0 {
			continue
		}
		ch, found, err := readChannel(ctx, s.db, store.ChannelKey{PortalID: portalID, AppID: appID, UserID: id, Type: typ})
		if err != nil {
			return nil, false, fmt.Errorf("user %d: %w", id, err)
		}
		if !found || ch.Expired(now) {
			return nil, false, nil
		}
		channels[id] = ch
	}
	return channels, true, nil
}

// EnqueuePush implements Store.
func (s *Store) EnqueuePush(ctx context.Context, payload []byte, now time.Time) (store.PushJob, error) {
	j := store.PushJob{Payload: append([]byte(nil), payload...), NextAttempt: now, CreatedAt: now}
	err := s.db.QueryRowContext(ctx, `INSERT INTO push_jobs (payload, attempts, next_attempt, created_at) VALUES (?, 0, ?, ?) RETURNING id`,
		j.Payload, store.EncodeTime(now), store.EncodeTime(now)).Scan(&j.ID)
	if err != nil {
		return store.PushJob{}, fmt.Errorf("store: enqueue push: %w", dbErr(err))
	}
	j.NextAttempt, j.CreatedAt = store.DecodeTime(store.EncodeTime(now)), store.DecodeTime(store.EncodeTime(now))
	return j, nil
}

// ClaimPush implements Store. One UPDATE ... RETURNING picks and leases the
// job, so two claimers cannot get the same one.
func (s *Store) ClaimPush(ctx context.Context, now time.Time, lease time.Duration) (store.PushJob, error) {
	var j store.PushJob
	var next, created int64
	err := s.db.QueryRowContext(ctx, `UPDATE push_jobs SET next_attempt = ?
WHERE id = (SELECT id FROM push_jobs WHERE next_attempt <= ? ORDER BY next_attempt, id LIMIT 1)
RETURNING id, payload, attempts, next_attempt, created_at`, store.EncodeTime(now.Add(lease)), store.EncodeTime(now)).
		Scan(&j.ID, &j.Payload, &j.Attempts, &next, &created)
	if err != nil {
		return store.PushJob{}, fmt.Errorf("store: claim push: %w", dbErr(err))
	}
	j.NextAttempt, j.CreatedAt = store.DecodeTime(next), store.DecodeTime(created)
	return j, nil
}

// CompletePush implements Store.
func (s *Store) CompletePush(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM push_jobs WHERE id = ?`, id)
	return pushAffected("complete push", res, err)
}

// RetryPush implements Store.
func (s *Store) RetryPush(ctx context.Context, id int64, next time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE push_jobs SET attempts = attempts + 1, next_attempt = ? WHERE id = ?`, store.EncodeTime(next), id)
	return pushAffected("retry push", res, err)
}

// PushQueueLen implements Store.
func (s *Store) PushQueueLen(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_jobs`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: push queue length: %w", dbErr(err))
	}
	return n, nil
}

func pushAffected(op string, res sql.Result, err error) error {
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if n == 0 {
		return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	return nil
}

// dbErr maps driver errors to the package's sentinels.
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var se *moderncsqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %v", store.ErrConflict, err)
		}
	}
	return err
}
