package desk

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// webhookBacklog bounds the transitions waiting for the webhook; past it
// they are dropped (and logged): a slow consumer never slows the desk.
const webhookBacklog = 1024

// webhook POSTs case transitions, in order, retrying each a few times.
type webhook struct {
	url    string
	log    zerolog.Logger
	client *http.Client
	in     chan Transition
}

func newWebhook(url string, log zerolog.Logger) *webhook {
	return &webhook{url: url, log: log, client: &http.Client{Timeout: 10 * time.Second}, in: make(chan Transition, webhookBacklog)}
}

func (h *webhook) send(tr Transition) {
	select {
	case h.in <- tr:
	default:
		h.log.Warn().Str("event", "desk_webhook").Int64("case", tr.Case.ID).Msg("desk: webhook backlog full: transition not sent")
	}
}

func (h *webhook) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case tr := <-h.in:
			body, _ := json.Marshal(tr)
			for attempt, wait := 1, 500*time.Millisecond; ; attempt, wait = attempt+1, wait*2 {
				err := h.post(ctx, body)
				if err == nil {
					break
				}
				if attempt == 5 || ctx.Err() != nil {
					h.log.Warn().Str("event", "desk_webhook").Int64("case", tr.Case.ID).Err(err).Msg("desk: webhook failed: transition not sent")
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}
}

type statusError int

func (e statusError) Error() string { return "status " + http.StatusText(int(e)) }

func (h *webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(resp.StatusCode)
	}
	return nil
}
