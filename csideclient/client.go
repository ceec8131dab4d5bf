// Package csideclient speaks cside's token API: it trades a browser session
// token for the datapoint bundle (/token/v1/client) or for the stable
// fingerprint ID (/token/v1/clientId).
//
// Every call goes through one circuit breaker (gobreaker) and one reused
// http.Client. Failures are reported as errors wrapping exactly one of the
// sentinels ErrNotFound, ErrRejected or ErrUnavailable, so callers classify
// them with errors.Is. The package logs nothing and imports nothing of
// Verdict's.
package csideclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sony/gobreaker/v2"
)

// Sentinel errors. Every error returned by Client wraps exactly one of them.
var (
	// ErrNotFound means cside has no datapoints or fingerprint for the token
	// (404). It is a normal answer, not a failure.
	ErrNotFound = errors.New("not found")
	// ErrRejected means cside refused our request or credentials (400, 401,
	// 403, 422 and other 4xx but 408 and 429). Retrying will not help.
	ErrRejected = errors.New("rejected by upstream")
	// ErrUnavailable means no usable answer was obtained: timeout, connection
	// error, 408, 429, 5xx, an invalid or oversized body, or an open breaker.
	ErrUnavailable = errors.New("upstream unavailable")
)

// errAbandoned marks a call whose caller's context ended first; the breaker
// ignores such calls since they say nothing about cside's health.
var errAbandoned = errors.New("caller gave up")

// transientError marks failures worth one retry: timeouts, connection
// errors, 408, 429 and 5xx. Invalid bodies and 4xx are not retried. It does
// not change the message of the error it wraps.
type transientError struct {
	error
	kind string // timeout, network or http: the outcome reported to OnAttempt
}

func (e transientError) Unwrap() error { return e.error }

func isTransient(err error) bool {
	_, ok := errors.AsType[transientError](err)
	return ok
}

// Defaults for Config's zero values.
const (
	DefaultBaseURL      = "https://api.cside.com"
	DefaultClientPath   = "/token/v1/client"
	DefaultClientIDPath = "/token/v1/clientId"
	DefaultTimeout      = 800 * time.Millisecond
	DefaultRetryBackoff = 50 * time.Millisecond
	DefaultMaxBodyBytes = 1 << 20
)

// maxFingerprintIDBytes caps a /clientId answer; real IDs are ~25 bytes.
const maxFingerprintIDBytes = 256

// Config configures a Client. The zero value talks to the real cside with no
// auth header and the defaults documented on each field.
type Config struct {
	// BaseURL is the scheme and host of the API. Zero means DefaultBaseURL.
	BaseURL string
	// ClientPath is the datapoints endpoint. Zero means DefaultClientPath.
	ClientPath string
	// ClientIDPath is the fingerprint ID endpoint. Zero means
	// DefaultClientIDPath.
	ClientIDPath string
	// HeaderName and HeaderValue, when HeaderName is set, are sent on every
	// request, e.g. "Authorization" and "Bearer <key>".
	HeaderName, HeaderValue string
	// Timeout is the budget of one call, retry included, from dial to the
	// last body byte. Zero means DefaultTimeout (800 ms).
	Timeout time.Duration
	// AttemptTimeout bounds the first attempt, so that a retry still fits in
	// the budget when cside hangs. Zero means half of Timeout.
	AttemptTimeout time.Duration
	// RetryBackoff is the mean pause before the one retry made on a timeout,
	// connection error, 408, 429 or 5xx; the pause is drawn uniformly from
	// [0.5, 1.5) times it, and the retry is skipped when the budget has no
	// room left after it. Zero means DefaultRetryBackoff (50 ms).
	RetryBackoff time.Duration
	// NoRetry disables the retry.
	NoRetry bool
	// OnAttempt, if set, is called after every request to cside (retries
	// included) with the endpoint ("client" or "clientId"), the outcome (ok,
	// not_found, rejected, timeout, network_error, http_error,
	// invalid_answer, abandoned; breaker_open for a call the breaker
	// refused, with no request made) and how long it took. For metrics; it
	// must be quick.
	OnAttempt func(endpoint, outcome string, d time.Duration)
	// MaxBodyBytes caps an answer's body; a larger one is ErrUnavailable.
	// Zero means DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64
	// Breaker configures the circuit breaker.
	Breaker BreakerConfig
	// Transport, if set, replaces the client's own transport (tests).
	Transport http.RoundTripper
}

// BreakerConfig configures the circuit breaker shared by both endpoints.
// Only failures count toward tripping: timeouts, connection errors, 408,
// 429, 5xx and invalid bodies. 404 and other 4xx count as successes (cside
// answered); calls abandoned by their caller are not counted at all.
type BreakerConfig struct {
	// Window is the closed-state period after which counts reset. Zero means
	// 10s.
	Window time.Duration
	// OpenFor is how long the breaker stays open before letting probes
	// through. Zero means 5s.
	OpenFor time.Duration
	// HalfOpenProbes is how many requests may pass while half-open. Zero
	// means 3.
	HalfOpenProbes uint32
	// ConsecutiveFailures trips the breaker on its own. Zero means 5.
	ConsecutiveFailures uint32
	// FailureRatio trips the breaker when at least MinRequests were made in
	// the window. Zero means 0.5.
	FailureRatio float64
	// MinRequests is the volume needed before FailureRatio applies. Zero
	// means 10.
	MinRequests uint32
	// OnStateChange, if set, is called on every transition with the state
	// names "closed", "half-open" or "open". It runs while the breaker holds
	// its lock: it must be quick and must not call the Client (BreakerState
	// would deadlock).
	OnStateChange func(from, to string)
}

func (b *BreakerConfig) setDefaults() {
	if b.Window == 0 {
		b.Window = 10 * time.Second
	}
	if b.OpenFor == 0 {
		b.OpenFor = 5 * time.Second
	}
	if b.HalfOpenProbes == 0 {
		b.HalfOpenProbes = 3
	}
	if b.ConsecutiveFailures == 0 {
		b.ConsecutiveFailures = 5
	}
	if b.FailureRatio == 0 {
		b.FailureRatio = 0.5
	}
	if b.MinRequests == 0 {
		b.MinRequests = 10
	}
}

// Client calls cside. It is safe for concurrent use; build one per process.
type Client struct {
	cfg          Config
	clientURL    string
	clientIDURL  string
	http         *http.Client
	breaker      *gobreaker.CircuitBreaker[[]byte]
	maxBodyBytes int64
}

// New validates cfg, fills its defaults and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.ClientPath == "" {
		cfg.ClientPath = DefaultClientPath
	}
	if cfg.ClientIDPath == "" {
		cfg.ClientIDPath = DefaultClientIDPath
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = cfg.Timeout / 2
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	cfg.Breaker.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	transport := cfg.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 128
		t.IdleConnTimeout = 90 * time.Second
		t.TLSHandshakeTimeout = cfg.Timeout
		t.ResponseHeaderTimeout = cfg.Timeout
		t.DialContext = (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext
		transport = t
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	c := &Client{
		cfg:         cfg,
		clientURL:   base + cfg.ClientPath,
		clientIDURL: base + cfg.ClientIDPath,
		http: &http.Client{
			Transport: transport,
			// A redirect from a POST API is a misconfiguration: surface it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		maxBodyBytes: cfg.MaxBodyBytes,
	}
	b := cfg.Breaker
	c.breaker = gobreaker.NewCircuitBreaker[[]byte](gobreaker.Settings{
		Name:        "cside",
		MaxRequests: b.HalfOpenProbes,
		Interval:    b.Window,
		Timeout:     b.OpenFor,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			if n.ConsecutiveFailures >= b.ConsecutiveFailures {
				return true
			}
			// Abandoned calls are excluded: they make up neither the volume
			// nor the denominator of the ratio.
			valid := n.Requests - min(n.TotalExclusions, n.Requests)
			return valid >= b.MinRequests && float64(n.TotalFailures) >= b.FailureRatio*float64(valid)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if b.OnStateChange != nil {
				b.OnStateChange(from.String(), to.String())
			}
		},
		IsSuccessful: func(err error) bool {
			return err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrRejected)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errAbandoned) },
	})
	return c, nil
}

func (cfg *Config) validate() error {
	var errs []error
	u, err := url.Parse(cfg.BaseURL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("base URL %q: %w", cfg.BaseURL, err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("base URL %q: scheme must be http or https", cfg.BaseURL))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("base URL %q: no host", cfg.BaseURL))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("base URL %q: must not carry a query or fragment", cfg.BaseURL))
	}
	for _, p := range []struct{ name, path string }{{"client path", cfg.ClientPath}, {"clientId path", cfg.ClientIDPath}} {
		if !strings.HasPrefix(p.path, "/") || strings.ContainsAny(p.path, "?# ") {
			errs = append(errs, fmt.Errorf("%s %q: must start with / and hold no query, fragment or space", p.name, p.path))
		}
	}
	if cfg.ClientPath == cfg.ClientIDPath {
		errs = append(errs, fmt.Errorf("client path and clientId path are both %q: they must differ", cfg.ClientPath))
	}
	if cfg.HeaderName == "" && cfg.HeaderValue != "" {
		errs = append(errs, errors.New("header value given without a header name"))
	}
	if cfg.HeaderName != "" && !validHeaderName(cfg.HeaderName) {
		errs = append(errs, fmt.Errorf("header name %q: not a valid HTTP header name", cfg.HeaderName))
	}
	if strings.ContainsFunc(cfg.HeaderValue, func(r rune) bool { return r != '\t' && (r < 0x20 || r == 0x7f) }) {
		// net/http refuses such values on every request; catch them here.
		errs = append(errs, errors.New("header value: must not contain control characters"))
	}
	if cfg.Timeout < 0 || cfg.AttemptTimeout < 0 || cfg.RetryBackoff < 0 {
		errs = append(errs, fmt.Errorf("timeout %v, attempt timeout %v, retry backoff %v: must be positive",
			cfg.Timeout, cfg.AttemptTimeout, cfg.RetryBackoff))
	}
	if cfg.AttemptTimeout > cfg.Timeout {
		errs = append(errs, fmt.Errorf("attempt timeout %v exceeds the call budget %v", cfg.AttemptTimeout, cfg.Timeout))
	}
	if cfg.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d: must be positive", cfg.MaxBodyBytes))
	}
	if r := cfg.Breaker.FailureRatio; r < 0 || r > 1 {
		errs = append(errs, fmt.Errorf("breaker failure ratio %v: must be within 0..1", r))
	}
	if cfg.Breaker.Window < 0 || cfg.Breaker.OpenFor < 0 {
		errs = append(errs, errors.New("breaker durations must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("csideclient: invalid config: %w", err)
	}
	return nil
}

func validHeaderName(s string) bool {
	for _, r := range s {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return s != ""
}

// BreakerState reports the breaker's state: "closed", "half-open" or "open".
func (c *Client) BreakerState() string { return c.breaker.State().String() }

// Close closes idle connections. The Client stays usable.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Datapoints returns the raw JSON datapoint bundle cside holds for token.
// The bytes are a valid JSON object of at most Config.MaxBodyBytes.
func (c *Client) Datapoints(ctx context.Context, token string) ([]byte, error) {
	return c.call(ctx, c.clientURL, c.cfg.ClientPath, token)
}

// ClientID returns the stable fingerprint ID cside holds for token, or an
// error wrapping ErrNotFound when there is none. An answer that is empty,
// longer than 256 bytes or holds whitespace, control characters, quotes,
// markup or JSON delimiters is ErrUnavailable.
func (c *Client) ClientID(ctx context.Context, token string) (string, error) {
	body, err := c.call(ctx, c.clientIDURL, c.cfg.ClientIDPath, token)
	if err != nil {
		return "", err
	}
	return string(body), nil
}

// call makes one breaker-guarded call, with at most one retry, within the
// budget, and returns the validated body. The breaker counts the call once,
// by its final outcome: an upstream failing half its requests fails a
// quarter of the calls, which should not keep the breaker open.
func (c *Client) call(ctx context.Context, target, path, token string) ([]byte, error) {
	if token == "" {
		return nil, fmt.Errorf("cside %s: empty token: %w", path, ErrRejected)
	}
	budget, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	body, err := c.breaker.Execute(func() ([]byte, error) {
		body, err := c.attempt(ctx, budget, c.cfg.AttemptTimeout, target, path, token)
		if err == nil || c.cfg.NoRetry || !isTransient(err) {
			return body, err
		}
		if !c.pause(budget) {
			return nil, err
		}
		body, retryErr := c.attempt(ctx, budget, 0, target, path, token)
		switch {
		case retryErr == nil:
		case retryErr.Error() == err.Error():
			return nil, fmt.Errorf("%w (twice)", retryErr)
		default:
			return nil, fmt.Errorf("%w (after %v)", retryErr, err)
		}
		return body, nil
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		c.report(path, "breaker_open", 0)
		return nil, fmt.Errorf("cside %s: circuit breaker %s: %w", path, c.BreakerState(), ErrUnavailable)
	case err != nil:
		return nil, err
	}
	return body, nil
}

// pause waits the jittered retry backoff. It reports false, at once, when
// the budget has no room for a retry after the pause, or when the budget
// ends during it.
func (c *Client) pause(budget context.Context) bool {
	d := time.Duration(float64(c.cfg.RetryBackoff) * (0.5 + rand.Float64())) // #nosec G404 -- jitter spreads retries; it needs no unpredictability
	if deadline, ok := budget.Deadline(); ok && time.Until(deadline) <= d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-budget.Done():
		return false
	}
}

// attempt makes one request with post and reports it to OnAttempt.
func (c *Client) attempt(parent, budget context.Context, attemptTimeout time.Duration, target, path, token string) ([]byte, error) {
	start := time.Now()
	body, err := c.post(parent, budget, attemptTimeout, target, path, token)
	c.report(path, outcome(err), time.Since(start))
	return body, err
}

func (c *Client) report(path, outcome string, d time.Duration) {
	if c.cfg.OnAttempt == nil {
		return
	}
	endpoint := "client"
	if path == c.cfg.ClientIDPath {
		endpoint = "clientId"
	}
	c.cfg.OnAttempt(endpoint, outcome, d)
}

// outcome names the result of one request for OnAttempt.
func outcome(err error) string {
	if t, ok := errors.AsType[transientError](err); ok {
		return t.kind
	}
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errAbandoned):
		return "abandoned"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrRejected):
		return "rejected"
	default:
		return "invalid_answer"
	}
}

// post makes one attempt within budget, and within attemptTimeout when it
// is positive. parent is the caller's context: when it ends first, the
// attempt was abandoned rather than failed.
func (c *Client) post(parent, budget context.Context, attemptTimeout time.Duration, target, path, token string) ([]byte, error) {
	callCtx := budget
	if attemptTimeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(budget, attemptTimeout)
		defer cancel()
	}

	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, target, strings.NewReader(token))
	if err != nil {
		return nil, fmt.Errorf("cside %s: building request: %w: %w", path, ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Accept", "application/json, text/plain")
	if c.cfg.HeaderName != "" {
		req.Header.Set(c.cfg.HeaderName, c.cfg.HeaderValue)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(parent, callCtx, path, err)
	}
	defer closeBody(resp.Body)

	if err := statusError(path, resp.StatusCode); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBodyBytes+1))
	if err != nil {
		return nil, c.transportError(parent, callCtx, path, err)
	}
	if int64(len(body)) > c.maxBodyBytes {
		return nil, fmt.Errorf("cside %s: body exceeds %d bytes: %w", path, c.maxBodyBytes, ErrUnavailable)
	}
	if path == c.cfg.ClientIDPath {
		return validateClientID(path, body)
	}
	return validatePayload(path, body)
}

// transportError classifies a failed exchange: abandoned by the caller, out
// of time, or a network failure.
func (c *Client) transportError(parent, callCtx context.Context, path string, err error) error {
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("cside %s: %w: %w: %w", path, errAbandoned, ErrUnavailable, parent.Err())
	case callCtx.Err() != nil:
		return transientError{fmt.Errorf("cside %s: no answer in time: %w", path, ErrUnavailable), "timeout"}
	default:
		return transientError{fmt.Errorf("cside %s: %w: %w", path, ErrUnavailable, err), "network_error"}
	}
}

// statusError maps an HTTP status to nil (200) or a sentinel-wrapping error.
func statusError(path string, status int) error {
	var kind error
	switch {
	case status == http.StatusOK:
		return nil
	case status == http.StatusNotFound:
		kind = ErrNotFound
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return transientError{fmt.Errorf("cside %s: status %d: %w", path, status, ErrUnavailable), "http_error"}
	case status >= 400:
		kind = ErrRejected
	default:
		kind = ErrUnavailable // 1xx, other 2xx, 3xx: not the documented contract
	}
	return fmt.Errorf("cside %s: status %d: %w", path, status, kind)
}

// MaxPayloadDepth is the deepest nesting of objects and arrays accepted in
// a datapoints payload; cside's is about 4.
const MaxPayloadDepth = 64

func validatePayload(path string, body []byte) ([]byte, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(body):
		return nil, fmt.Errorf("cside %s: answer is not a JSON object: %w", path, ErrUnavailable)
	case !utf8.Valid(body):
		return nil, fmt.Errorf("cside %s: answer is not valid UTF-8: %w", path, ErrUnavailable)
	case depth(body) > MaxPayloadDepth:
		return nil, fmt.Errorf("cside %s: answer nested deeper than %d levels: %w", path, MaxPayloadDepth, ErrUnavailable)
	}
	return body, nil
}

// depth returns the deepest nesting of objects and arrays in valid JSON.
func depth(b []byte) int {
	d, deepest, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped = c == '\\'
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}

func validateClientID(path string, body []byte) ([]byte, error) {
	id := bytes.TrimSpace(body)
	switch {
	case len(id) == 0:
		return nil, fmt.Errorf("cside %s: empty fingerprint ID: %w", path, ErrUnavailable)
	case len(id) > maxFingerprintIDBytes:
		return nil, fmt.Errorf("cside %s: fingerprint ID longer than %d bytes: %w", path, maxFingerprintIDBytes, ErrUnavailable)
	case !utf8.Valid(id) || bytes.ContainsFunc(id, invalidIDRune):
		return nil, fmt.Errorf("cside %s: fingerprint ID holds invalid characters: %w", path, ErrUnavailable)
	}
	return id, nil
}

// invalidIDRune reports runes no fingerprint ID holds: control characters,
// whitespace, and the quote, markup and JSON delimiters that betray an error
// page or a JSON document answered with status 200.
func invalidIDRune(r rune) bool {
	return unicode.IsControl(r) || unicode.IsSpace(r) || strings.ContainsRune(`"<>\{}[]`, r)
}

// closeBody drains a bounded remainder so the connection can be reused, then
// closes it. An oversized remainder is not drained: the connection is dropped.
func closeBody(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}
