package api

import (
	"context"
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// RequestIDHeader carries a request's ID in and out.
const RequestIDHeader = "X-Request-ID"

// requestInfo is what the middlewares learn about a request: its ID
// (requestID) and the name of the caller's key (authenticate). One value in
// the request's context holds both: each context value costs the request a
// copy of its *http.Request.
type requestInfo struct {
	id      string
	keyName string
}

type requestInfoKey struct{}

// infoOf returns the requestInfo of ctx, nil outside a request.
func infoOf(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// withInfo returns c's requestInfo, adding one to its request's context
// when it has none yet. Only c's own goroutine writes it.
func withInfo(c *gin.Context) *requestInfo {
	info := infoOf(c.Request.Context())
	if info == nil {
		info = &requestInfo{}
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), requestInfoKey{}, info))
	}
	return info
}

// RequestID returns the ID of the request ctx belongs to, "" outside one.
func RequestID(ctx context.Context) string {
	if info := infoOf(ctx); info != nil {
		return info.id
	}
	return ""
}

// validRequestID accepts 1 to 128 printable ASCII characters without spaces:
// anything else from a caller is replaced, never logged.
func validRequestID(id string) bool {
	return id != "" && len(id) <= 128 && printable(id)
}

// requestID gives every request an ID: the caller's X-Request-ID when it is
// valid, else a new UUIDv7. It is echoed in the response and carried in the
// request's context (and so in every log line of the request).
func requestID(c *gin.Context) {
	id := c.GetHeader(RequestIDHeader)
	if !validRequestID(id) {
		id = uuid.Must(uuid.NewV7()).String()
	}
	c.Header(RequestIDHeader, id)
	withInfo(c).id = id
	c.Next()
}

// accessLog writes one line per request: method, route, status, latency,
// response size. Never bodies, tokens or query strings.
func (s *server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	ctx := c.Request.Context()
	if !s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	// A record built here, without the caller's program counter that
	// Logger.LogAttrs would look up on every request (slog's documented way
	// for a wrapper; no handler of ours prints the source).
	now := time.Now()
	r := slog.NewRecord(now, slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("method", c.Request.Method),
		slog.String("route", route),
		slog.Int("status", c.Writer.Status()),
		slog.Float64("latency_ms", float64(now.Sub(start).Microseconds())/1000),
		slog.Int("bytes", max(c.Writer.Size(), 0)),
		slog.String("key", KeyName(ctx)))
	_ = s.log.Handler().Handle(ctx, r)
}

// LogHandler wraps h so that every record logged with a request's context
// carries its request_id.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
