package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/verdict-engine/verdict/engine"
)

// Input limits of the HTTP contract.
const (
	// DefaultMaxBodyBytes caps a request body (64 KiB).
	DefaultMaxBodyBytes = 64 << 10
	// MaxTokenBytes caps a session token.
	MaxTokenBytes = 4096
)

// actionType is the shape of action.type.
var actionType = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// apiError is an error with its HTTP status and machine-readable code.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func invalidRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...)}
}

// readJSONBody enforces, in order, the JSON content type (before reading),
// the body cap (while reading), JSON syntax, a top-level object and the
// structural limits (checkStructure), and returns the body decoded once by
// decode (decodeObject, decodeDecide), numbers kept exact as json.Number.
// decode must copy what it keeps: the body's buffer is reused.
func readJSONBody[T any](r *http.Request, limit int64, decode func(body []byte) T) (T, error) {
	var zero T
	if ct := r.Header.Get("Content-Type"); ct != "application/json" && !isJSONMediaType(ct) {
		return zero, &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("Content-Type must be application/json, got %q", ct)}
	}
	tooLarge := func() error {
		return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", limit)}
	}
	if r.ContentLength > limit {
		return zero, tooLarge()
	}
	buf := bodyBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledBody {
			bodyBuffers.Put(buf)
		}
	}()
	body, err := readBody(r.Body, (*buf)[:0], limit)
	*buf = body
	if errors.Is(err, errBodyTooLarge) {
		return zero, tooLarge()
	}
	if err != nil {
		return zero, &apiError{http.StatusBadRequest, "invalid_json", "reading request body: " + err.Error()}
	}
	if !json.Valid(body) {
		var syntax error = errors.New("empty body")
		if len(bytes.TrimSpace(body)) > 0 {
			syntax = json.Unmarshal(body, new(any))
		}
		return zero, &apiError{http.StatusBadRequest, "invalid_json", "request body is not valid JSON: " + syntax.Error()}
	}
	if body = bytes.TrimLeft(body, " \t\r\n"); body[0] != '{' {
		return zero, invalidRequest("request body must be a JSON object")
	}
	if err := checkStructure(body); err != nil {
		return zero, err
	}
	return decode(body), nil
}

// isJSONMediaType reports whether ct is application/json, parameters
// allowed (charset=utf-8, ...).
func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// decodeObject decodes a body whose top level is an object (readJSONBody's
// checks) with decodeValid.
func decodeObject(body []byte) map[string]any { return decodeValid(body).(map[string]any) }

// bodyBuffers holds the buffers request bodies are read into: nothing
// decoded from a body refers to it (strings and numbers are copied).
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = 16 << 10

// decodeJSON decodes the first JSON value in b with numbers kept exact
// (json.Number): amounts reach policies exactly as sent. It returns nil
// when b does not start with one.
func decodeJSON(b []byte) any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	return v
}

// checkFields rejects fields outside allowed, so that a misspelt field is
// an error rather than silently ignored.
func checkFields(fields map[string]any, allowed ...string) error {
	var unknown []string
	for k := range fields {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	return unknownFields(unknown, allowed)
}

// unknownFields is the error for the fields outside allowed, nil if none.
func unknownFields(unknown, allowed []string) error {
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return invalidRequest("unknown field %q; allowed fields: %s", unknown[0], strings.Join(allowed, ", "))
	}
	return nil
}

// parseToken validates the token field.
func parseToken(raw any) (string, error) {
	if raw == nil {
		return "", invalidRequest("token is required")
	}
	token, ok := raw.(string)
	if !ok {
		return "", invalidRequest("token must be a string")
	}
	switch {
	case token == "":
		return "", invalidRequest("token must not be empty")
	case len(token) > MaxTokenBytes:
		return "", invalidRequest("token must be at most %d bytes, got %d", MaxTokenBytes, len(token))
	}
	if i := unprintableAt(token); i >= 0 {
		return "", invalidRequest("token must be printable ASCII without spaces (0x21-0x7e); byte %d is 0x%02x", i, token[i])
	}
	return token, nil
}

// decideMembers are the members of a /decide body.
var decideMembers = []string{"token", "action", "external_ids"}

// parseDecide validates a /decide body (decodeDecide) into an engine
// request.
func parseDecide(f decideFields) (engine.Request, error) {
	if err := unknownFields(f.unknown, decideMembers); err != nil {
		return engine.Request{}, err
	}
	token, err := parseToken(f.token)
	if err != nil {
		return engine.Request{}, err
	}
	action, err := parseAction(f.action)
	if err != nil {
		return engine.Request{}, err
	}
	if f.idsErr != nil {
		return engine.Request{}, f.idsErr
	}
	return engine.Request{Token: token, Action: action, ExternalIDs: f.ids}, nil
}

// parseIdentify validates an /identify body and returns its token.
func parseIdentify(fields map[string]any) (string, error) {
	if err := checkFields(fields, "token"); err != nil {
		return "", err
	}
	return parseToken(fields["token"])
}

// ParseAction validates an action object as /decide does (an object with a
// type matching ^[a-z][a-z0-9_.-]{0,63}$; numbers kept exact) for offline
// tools.
func ParseAction(raw []byte) (map[string]any, error) {
	v := decodeJSON(raw)
	if v == nil && !isNull(raw) {
		return nil, invalidRequest("action must be a JSON object")
	}
	return parseAction(v)
}

// ParseExternalIDs validates external IDs as /decide does: null or an object
// of strings.
func ParseExternalIDs(raw []byte) (map[string]string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errExternalIDs
	}
	return parseExternalIDs(v)
}

// isNull reports raw JSON that is absent (nil) or null.
func isNull(raw []byte) bool {
	return raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func parseAction(v any) (map[string]any, error) {
	if v == nil {
		return nil, invalidRequest("action is required")
	}
	action, ok := v.(map[string]any)
	if !ok {
		return nil, invalidRequest("action must be a JSON object")
	}
	t, ok := action["type"]
	if !ok || t == nil {
		return nil, invalidRequest("action.type is required")
	}
	s, ok := t.(string)
	if !ok {
		return nil, invalidRequest("action.type must be a string")
	}
	if !actionType.MatchString(s) {
		return nil, invalidRequest("action.type %q must match %s", s, actionType)
	}
	return action, nil
}

// errExternalIDs: external_ids is neither null nor an object.
var errExternalIDs = invalidRequest("external_ids must be null or an object of strings")

func parseExternalIDs(v any) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	ids, ok := v.(map[string]any)
	if !ok {
		return nil, errExternalIDs
	}
	out := make(map[string]string, len(ids))
	for k, v := range ids {
		s, ok := v.(string)
		if !ok {
			return nil, invalidRequest("external_ids[%q] must be a string", k)
		}
		out[k] = s
	}
	return out, nil
}
