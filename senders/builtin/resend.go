// resend.go: the built-in senders' HTTP side: one message per request to
// Resend's POST /emails at ONECOPY_API_URL (the fake provider APIs), over
// kept-alive connections, with the answers sorted as the ledger needs them.
package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/onecopy/onecopy/senders"
)

// resendAPIKey is the key the built-ins send; the fake accepts any unless
// told to require one.
const resendAPIKey = "re_onecopy_builtin"

// resendClient posts to one API base URL.
type resendClient struct {
	base string
	hc   *http.Client
}

// newResendClient checks env names an API and returns a client whose
// every request is bounded by timeout.
func newResendClient(sender string, env senders.Env, timeout time.Duration) (*resendClient, error) {
	if env.APIURL == "" {
		return nil, fmt.Errorf("%s: %s is not set: this sender sends through the provider API there (the harness sets it; by hand, the fake's HTTP address, like http://127.0.0.1:8025)", sender, senders.VarAPIURL)
	}
	return &resendClient{
		base: strings.TrimSuffix(env.APIURL, "/"),
		hc:   &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
	}, nil
}

// close drops the kept-alive connection.
func (c *resendClient) close() { c.hc.CloseIdleConnections() }

// resendEmail is the request body. Its fields and their order are fixed,
// so a retry of one message is byte for byte the same request: Resend
// answers a reused Idempotency-Key with another body by a 409.
type resendEmail struct {
	From    string            `json:"from"`
	To      []string          `json:"to"`
	Subject string            `json:"subject"`
	Text    string            `json:"text"`
	Headers map[string]string `json:"headers"`
}

// apiError is an answer other than 2xx, or no answer at all.
type apiError struct {
	status  int    // 0: no answer (the connection failed or timed out)
	name    string // Resend's error name
	message string
	err     error // the transport's error, when there was no answer
}

func (e *apiError) Error() string {
	if e.status == 0 {
		return "no answer from the API: " + e.err.Error()
	}
	return fmt.Sprintf("API answered %d %s: %s", e.status, e.name, e.message)
}

func (e *apiError) Unwrap() error { return e.err }

// classify sorts an API failure like an SMTP one: no answer is classConn
// (the message may have gone), 429, 5xx and a key still in flight are
// classTemp, anything else classPerm.
func (e *apiError) classify() class {
	switch {
	case e.status == 0:
		return classConn
	case e.status == 429 || e.status >= 500 || e.name == "concurrent_idempotent_requests":
		return classTemp
	}
	return classPerm
}

// forRecipient reports whether the refusal is about the message (422:
// Resend's validation of it) rather than the sender's account or request.
func (e *apiError) forRecipient() bool { return e.status == 422 }

// send posts one message to to, with idemKey as its Idempotency-Key when
// set, and returns the email's id. Cancelling ctx abandons the request.
func (c *resendClient) send(ctx context.Context, from, to, campaign, messageID, idemKey string) (string, error) {
	body, err := json.Marshal(resendEmail{
		From:    from,
		To:      []string{to},
		Subject: "onecopy campaign " + campaign,
		Text:    fmt.Sprintf("Hello,\n\nThis is campaign %s for %s.\nYou should get it once.\n", campaign, to),
		Headers: map[string]string{"Message-ID": messageID},
	})
	if err != nil {
		return "", fmt.Errorf("encode the message to %s: %w", to, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/emails", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("build the request to %s: %w; check %s", c.base, err, senders.VarAPIURL)
	}
	req.Header.Set("Authorization", "Bearer "+resendAPIKey)
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", &apiError{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", &apiError{err: fmt.Errorf("reading the answer: %w", err)}
	}
	var out struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Message string `json:"message"`
	}
	json.Unmarshal(b, &out) // an answer that is not JSON leaves the fields empty
	if resp.StatusCode/100 != 2 {
		return "", &apiError{status: resp.StatusCode, name: out.Name, message: out.Message}
	}
	if out.ID == "" {
		return "", &apiError{err: errors.New("a 2xx answer without an email id")}
	}
	return out.ID, nil
}

// apiErrorOf returns err's *apiError, or nil.
func apiErrorOf(err error) *apiError {
	var e *apiError
	if errors.As(err, &e) {
		return e
	}
	return nil
}
