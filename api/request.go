package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"

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
// the body cap (while reading) and JSON syntax, and returns the top-level
// object's fields.
func readJSONBody(w http.ResponseWriter, r *http.Request, limit int64) (map[string]json.RawMessage, error) {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return nil, &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("Content-Type must be application/json, got %q", ct)}
	}
	tooLarge := &apiError{http.StatusRequestEntityTooLarge, "body_too_large",
		fmt.Sprintf("request body exceeds %d bytes", limit)}
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		return nil, &apiError{http.StatusBadRequest, "invalid_json", "reading request body: " + err.Error()}
	}
	if !json.Valid(body) {
		var syntax error = errors.New("empty body")
		if len(bytes.TrimSpace(body)) > 0 {
			syntax = json.Unmarshal(body, new(any))
		}
		return nil, &apiError{http.StatusBadRequest, "invalid_json", "request body is not valid JSON: " + syntax.Error()}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, invalidRequest("request body must be a JSON object")
	}
	if err := checkStructure(body); err != nil {
		return nil, err
	}
	return fields, nil
}

// checkFields rejects fields outside allowed, so that a misspelt field is
// an error rather than silently ignored.
func checkFields(fields map[string]json.RawMessage, allowed ...string) error {
	var unknown []string
	for k := range fields {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return invalidRequest("unknown field %q; allowed fields: %s", unknown[0], strings.Join(allowed, ", "))
	}
	return nil
}

// isNull reports a field that is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	return raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// parseToken validates the token field.
func parseToken(fields map[string]json.RawMessage) (string, error) {
	raw := fields["token"]
	if isNull(raw) {
		return "", invalidRequest("token is required")
	}
	var token string
	if err := json.Unmarshal(raw, &token); err != nil {
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

// parseDecide validates a /decide body into an engine request.
func parseDecide(fields map[string]json.RawMessage) (engine.Request, error) {
	if err := checkFields(fields, "token", "action", "external_ids"); err != nil {
		return engine.Request{}, err
	}
	token, err := parseToken(fields)
	if err != nil {
		return engine.Request{}, err
	}
	action, err := parseAction(fields["action"])
	if err != nil {
		return engine.Request{}, err
	}
	ids, err := parseExternalIDs(fields["external_ids"])
	if err != nil {
		return engine.Request{}, err
	}
	return engine.Request{Token: token, Action: action, ExternalIDs: ids}, nil
}

// parseIdentify validates an /identify body and returns its token.
func parseIdentify(fields map[string]json.RawMessage) (string, error) {
	if err := checkFields(fields, "token"); err != nil {
		return "", err
	}
	return parseToken(fields)
}

// ParseAction validates an action object as /decide does (an object with a
// type matching ^[a-z][a-z0-9_.-]{0,63}$; numbers kept exact) for offline
// tools.
func ParseAction(raw []byte) (map[string]any, error) { return parseAction(raw) }

// ParseExternalIDs validates external IDs as /decide does: null or an object
// of strings.
func ParseExternalIDs(raw []byte) (map[string]string, error) { return parseExternalIDs(raw) }

func parseAction(raw json.RawMessage) (map[string]any, error) {
	if isNull(raw) {
		return nil, invalidRequest("action is required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // amounts reach policies exactly as sent
	var action map[string]any
	if err := dec.Decode(&action); err != nil {
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

func parseExternalIDs(raw json.RawMessage) (map[string]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var ids map[string]any
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, invalidRequest("external_ids must be null or an object of strings")
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
