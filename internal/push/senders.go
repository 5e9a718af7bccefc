package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// LogSender logs each notification: enough to see that pushes are accepted
// and to whom they would go.
type LogSender struct{ Log *slog.Logger }

// Deliver implements Sender.
func (l LogSender) Deliver(_ context.Context, payload []byte) error {
	l.Log.Info("push notification", "payload", string(payload))
	return nil
}

// WebhookSender POSTs each notification's JSON to URL, with its id (see
// Message.ID) also in the Idempotency-Key header. Any 2xx answer is a
// success. The queue bounds each attempt with its Timeout.
type WebhookSender struct {
	URL string
	// Client is the HTTP client (http.DefaultClient if nil).
	Client *http.Client
}

// Deliver implements Sender.
func (w WebhookSender) Deliver(ctx context.Context, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("push webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	var m struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(payload, &m) == nil && m.ID != "" {
		req.Header.Set("Idempotency-Key", m.ID)
	}
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("push webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("push webhook: %s answered %s", w.URL, resp.Status)
	}
	return nil
}
