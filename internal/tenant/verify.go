package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Refusal is a registration refused, with the code the portal is answered
// (the "error" of {"status":"error","error":…}).
type Refusal struct{ Code string }

func (r *Refusal) Error() string { return "registration refused: " + r.Code }

// The refusal codes of Bitrix's licence server that portals know, and the
// one of a server that registers through its operator only.
const (
	WrongSign            = "WRONG_SIGN"
	WrongRequest         = "WRONG_REQUEST"
	LicenseNotActive     = "LICENSE_NOT_ACTIVE"
	LicenseDemo          = "LICENSE_DEMO"
	LicenseNotFound      = "LICENSE_NOT_FOUND"
	RegistrationDisabled = "REGISTRATION_DISABLED"
)

// A Verifier judges a registration's verification query: the form the
// portal's pull module builds (BX_LICENCE, BX_TYPE, BX_HASH, BX_ALL). It
// returns the client id to register, or a *Refusal, or another error when
// it could not judge (the portal then gets the error text and may retry).
type Verifier interface {
	Verify(ctx context.Context, query string) (clientID string, err error)
}

// Verifier modes (--tenant-verify).
const (
	VerifyOpen     = "open"
	VerifyOperator = "operator"
	VerifyURL      = "url"
)

// licenceParam is the query field with the portal's public licence hash,
// which is its client id.
const licenceParam = "BX_LICENCE"

// clientIDOf reads the client id the query claims.
func clientIDOf(query string) (string, error) {
	v, err := url.ParseQuery(query)
	if err != nil {
		return "", &Refusal{WrongRequest}
	}
	id := strings.ToLower(v.Get(licenceParam))
	if !ValidClientID(id) {
		return "", &Refusal{WrongRequest}
	}
	return id, nil
}

// Open registers every portal that asks, under the client id its query
// claims: for test setups and closed networks, where whoever reaches the
// server is trusted.
type Open struct{}

// Verify implements Verifier.
func (Open) Verify(_ context.Context, query string) (string, error) { return clientIDOf(query) }

// Operator registers nobody: tenants are added with `pushpull tenant add`.
type Operator struct{}

// Verify implements Verifier.
func (Operator) Verify(context.Context, string) (string, error) {
	return "", &Refusal{RegistrationDisabled}
}

// URL forwards the query to an HTTP endpoint the operator runs, as Bitrix's
// cloud server forwards it to the licence server, and reads the verdict in
// the licence server's shape:
//
//	{"status":"ok","result":{"LICENSE_KEY_HEAD":"<client id>", …}}
//	{"status":"error","text":"LICENSE_NOT_FOUND"}
//
// A verdict without LICENSE_KEY_HEAD registers the client id the query
// claims.
type URL struct {
	Endpoint string
	Client   *http.Client
}

// maxVerdict bounds the endpoint's answer.
const maxVerdict = 64 << 10

// Verify implements Verifier.
func (u URL) Verify(ctx context.Context, query string) (string, error) {
	claimed, err := clientIDOf(query)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.Endpoint, strings.NewReader(query))
	if err != nil {
		return "", fmt.Errorf("verify: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c := u.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("verify: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxVerdict))
	if err != nil {
		return "", fmt.Errorf("verify: read verdict: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("verify: endpoint answered %s", resp.Status)
	}
	var v struct {
		Status string `json:"status"`
		Text   string `json:"text"`
		Result *struct {
			Head string `json:"LICENSE_KEY_HEAD"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("verify: verdict is not JSON: %w", err)
	}
	switch {
	case v.Status == "ok" && v.Result != nil:
		if v.Result.Head == "" {
			return claimed, nil
		}
		if !ValidClientID(v.Result.Head) {
			return "", errors.New("verify: the verdict's LICENSE_KEY_HEAD is not a client id")
		}
		return v.Result.Head, nil
	case v.Status == "error" && v.Text != "":
		return "", &Refusal{v.Text}
	}
	return "", errors.New("verify: Unknown Error")
}
