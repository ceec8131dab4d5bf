// Package api is Verdict's HTTP interface: POST /decide, POST /identify,
// GET /healthz and GET /readyz. It turns HTTP into engine requests and
// decisions (or errors) back into HTTP, validating every input here, in one
// place. It is the only package that imports Gin.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/engine/decisionlog"
)

// Decider makes decisions; *engine.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, req engine.Request) (engine.Decision, error)
	Identify(ctx context.Context, token string) engine.Identity
	// Revision is the serving policy revision, "" while none is loaded.
	Revision() string
}

// Config configures the HTTP handler. The zero value is usable.
type Config struct {
	// MaxBodyBytes caps request bodies. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives degraded decisions and internal errors; nil discards.
	// Raw tokens are never logged, only TokenHash.
	Logger *slog.Logger
	// BreakerState, if set, reports the upstream circuit breaker's state
	// ("closed", "half-open", "open") for GET /healthz. It never affects
	// readiness: an upstream outage must not take every replica out at once.
	BreakerState func() string
	// Keys, if set, are the API keys /decide and /identify require
	// (Authorization: Bearer <key>); nil requires none.
	Keys *Keys
	// RateLimit applies per key (or to all keyless callers together).
	RateLimit RateLimit
	// Metrics, if set, records every decision (NewAdmin serves it).
	Metrics *Metrics
	// DecisionLog, if set, receives every decision (*decisionlog.Logger).
	DecisionLog interface{ Log(decisionlog.Record) }
	// NoAccessLog turns off the one-line-per-request access log.
	NoAccessLog bool
}

type server struct {
	cfg     Config
	decider Decider
	log     *slog.Logger
}

// New returns the HTTP handler serving d. A nil d serves /healthz and
// answers 503 not_ready everywhere else.
func New(cfg Config, d Decider) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{cfg: cfg, decider: d, log: cfg.Logger}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(requestID)
	if !cfg.NoAccessLog {
		r.Use(s.accessLog)
	}
	r.Use(gin.CustomRecovery(s.recovered))
	decisions := r.Group("/")
	if cfg.Keys != nil {
		decisions.Use(authenticate(cfg.Keys, "verdict"))
	}
	if cfg.RateLimit.Rate > 0 {
		decisions.Use((&limiter{cfg: cfg.RateLimit}).limit)
	}
	decisions.POST("/decide", s.decide)
	decisions.POST("/identify", s.identify)
	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	jsonFallbacks(r)
	return r
}

// jsonFallbacks answers unknown routes and methods with JSON errors.
func jsonFallbacks(r *gin.Engine) {
	r.NoRoute(func(c *gin.Context) {
		writeError(c, &apiError{http.StatusNotFound, "not_found",
			fmt.Sprintf("no route for %s %s", c.Request.Method, c.Request.URL.Path)})
	})
	r.NoMethod(func(c *gin.Context) {
		var allow []string
		for _, rt := range r.Routes() {
			if rt.Path == c.Request.URL.Path {
				allow = append(allow, rt.Method)
			}
		}
		slices.Sort(allow)
		c.Header("Allow", strings.Join(allow, ", "))
		writeError(c, &apiError{http.StatusMethodNotAllowed, "method_not_allowed",
			fmt.Sprintf("%s %s: method not allowed; allowed: %s", c.Request.Method, c.Request.URL.Path, strings.Join(allow, ", "))})
	})
}

// TokenHash is how logs identify a session token: the first 12 hex digits
// of its SHA-256, as in the decision log.
func TokenHash(token string) string { return decisionlog.Hash(token) }

// DecideResponse is the body of a 200 answer to POST /decide; offline tools
// (verdict eval) print the same.
type DecideResponse struct {
	DecisionID    string          `json:"decision_id"`
	Decision      string          `json:"decision"`
	Reasons       []engine.Reason `json:"reasons"`
	FingerprintID *string         `json:"fingerprint_id"`
	Datapoints    DatapointsInfo  `json:"datapoints"`
	Policy        PolicyInfo      `json:"policy"`
	Degraded      bool            `json:"degraded"`
	ElapsedMS     float64         `json:"elapsed_ms"`
}

// DatapointsInfo says what the policy saw of cside.
type DatapointsInfo struct {
	Status engine.Status `json:"status"`
	Source engine.Origin `json:"source"`
}

// PolicyInfo names the policy set that decided.
type PolicyInfo struct {
	Revision string `json:"revision"`
}

// NewDecideResponse renders a decision made in elapsed.
func NewDecideResponse(d engine.Decision, elapsed time.Duration) DecideResponse {
	return DecideResponse{
		DecisionID:    d.ID,
		Decision:      d.Decision,
		Reasons:       d.Reasons,
		FingerprintID: optional(d.FingerprintID),
		Datapoints:    DatapointsInfo{Status: d.Status, Source: d.Origin},
		Policy:        PolicyInfo{Revision: d.Revision},
		Degraded:      d.Degraded,
		ElapsedMS:     math.Round(float64(elapsed.Microseconds())) / 1000,
	}
}

// Response bodies of the HTTP contract.
type (
	identifyResponse struct {
		FingerprintID *string        `json:"fingerprint_id"`
		Datapoints    DatapointsInfo `json:"datapoints"`
	}
	errorBody struct {
		Error errorDetail `json:"error"`
	}
	errorDetail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
)

var errNotReady = &apiError{http.StatusServiceUnavailable, "not_ready", "no policy set is loaded yet"}

// readRequest reads a JSON request body with readJSONBody and decode once a
// decider is ready; on any problem it writes the error answer and reports
// false.
func readRequest[T any](s *server, c *gin.Context, decode func(body []byte) T) (T, bool) {
	if s.decider == nil {
		writeError(c, errNotReady)
		var zero T
		return zero, false
	}
	fields, err := readJSONBody(c.Request, s.cfg.MaxBodyBytes, decode)
	if err != nil {
		writeError(c, err)
		return fields, false
	}
	return fields, true
}

func (s *server) decide(c *gin.Context) {
	start := time.Now()
	fields, ok := readRequest(s, c, decodeDecide)
	if !ok {
		return
	}
	req, err := parseDecide(fields)
	if err != nil {
		writeError(c, err)
		return
	}
	d, err := s.decider.Decide(c.Request.Context(), req)
	if err != nil {
		s.logError(c, "decision failed", req.Token, err)
		writeError(c, err)
		return
	}
	if d.Degraded {
		s.log.LogAttrs(c.Request.Context(), slog.LevelWarn, "decision made without datapoints",
			slog.String("decision_id", d.ID), slog.String("token_hash", TokenHash(req.Token)),
			slog.String("status", string(d.Status)), slog.Any("error", d.UpstreamErr))
	}
	elapsed := time.Since(start)
	actionType, _ := req.Action["type"].(string)
	s.cfg.Metrics.observeDecision(d, actionType, elapsed)
	if s.cfg.DecisionLog != nil {
		s.cfg.DecisionLog.Log(decisionlog.Record{Decision: d, Request: req, KeyName: KeyName(c.Request.Context()),
			RequestID: RequestID(c.Request.Context()), At: start, Elapsed: elapsed})
	}
	resp := NewDecideResponse(d, elapsed)
	writeJSON(c, http.StatusOK, &resp)
}

func (s *server) identify(c *gin.Context) {
	fields, ok := readRequest(s, c, decodeObject)
	if !ok {
		return
	}
	token, err := parseIdentify(fields)
	if err != nil {
		writeError(c, err)
		return
	}
	id := s.decider.Identify(c.Request.Context(), token)
	if id.Err != nil && id.Status != engine.StatusNotFound {
		s.log.LogAttrs(c.Request.Context(), slog.LevelWarn, "fingerprint ID not obtained",
			slog.String("token_hash", TokenHash(token)), slog.String("status", string(id.Status)), slog.Any("error", id.Err))
	}
	writeJSON(c, http.StatusOK, &identifyResponse{
		FingerprintID: optional(id.FingerprintID),
		Datapoints:    DatapointsInfo{Status: id.Status, Source: id.Origin},
	})
}

func (s *server) healthz(c *gin.Context) {
	body := gin.H{"status": "ok"}
	if s.cfg.BreakerState != nil {
		body["upstream"] = gin.H{"breaker": s.cfg.BreakerState()}
	}
	c.JSON(http.StatusOK, body)
}

func (s *server) readyz(c *gin.Context) {
	if s.decider == nil || s.decider.Revision() == "" {
		writeError(c, errNotReady)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "policy": PolicyInfo{Revision: s.decider.Revision()}})
}

func (s *server) recovered(c *gin.Context, v any) {
	s.log.LogAttrs(c.Request.Context(), slog.LevelError, "panic serving request",
		slog.String("path", c.Request.URL.Path), slog.Any("panic", v))
	writeError(c, errors.New("panic"))
}

func (s *server) logError(c *gin.Context, msg, token string, err error) {
	if _, ok := errors.AsType[*apiError](err); ok || errors.Is(err, context.Canceled) {
		return
	}
	s.log.LogAttrs(c.Request.Context(), slog.LevelError, msg,
		slog.String("token_hash", TokenHash(token)), slog.Any("error", err))
}

// statusClientClosedRequest is nginx's status for a client that went away;
// nobody reads it, but access logs do.
const statusClientClosedRequest = 499

// writeError is the one place errors become HTTP statuses.
func writeError(c *gin.Context, err error) {
	e, ok := errors.AsType[*apiError](err)
	switch {
	case ok:
	case errors.Is(err, engine.ErrPolicy):
		e = &apiError{http.StatusInternalServerError, "policy_error", err.Error()}
	case errors.Is(err, context.Canceled):
		e = &apiError{statusClientClosedRequest, "canceled", "the client closed the request"}
	case errors.Is(err, context.DeadlineExceeded):
		e = &apiError{http.StatusServiceUnavailable, "timeout", "the decision did not complete in time"}
	default:
		e = &apiError{http.StatusInternalServerError, "internal_error", "internal error"}
	}
	c.AbortWithStatusJSON(e.status, errorBody{Error: errorDetail{Code: e.code, Message: e.message}})
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
