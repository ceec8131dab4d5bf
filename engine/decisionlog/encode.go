package decisionlog

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
)

// appendEntry appends e as json.Encoder writes it (one line, newline
// included) and reports true, or reports false and leaves the line to
// encoding/json when e holds anything whose encoding takes more than
// copying: a string to escape, a datapoints payload to compact, a shadow
// decision, a value of another type than JSON decoding gives. On the
// common line it is several times faster than reflection, and allocates
// nothing. TestAppendEntry and FuzzAppendEntry hold it to encoding/json.
func appendEntry(b []byte, e *Entry) ([]byte, bool) {
	if e.Shadow != nil || e.Datapoints.Payload != nil {
		return b, false
	}
	ok := true
	str := func(s string) {
		if ok {
			b, ok = appendString(b, s)
		}
	}
	b = append(b, `{"decision_id":`...)
	str(e.DecisionID)
	if y := e.Timestamp.Year(); y < 0 || y > 9999 {
		return b, false
	}
	b = append(b, `,"timestamp":"`...)
	b = e.Timestamp.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if e.RequestID != "" {
		b = append(b, `,"request_id":`...)
		str(e.RequestID)
	}
	if e.Key != "" {
		b = append(b, `,"key":`...)
		str(e.Key)
	}
	b = append(b, `,"action":`...)
	b, actionOK := appendValue(b, e.Action)
	if !ok || !actionOK {
		return b, false
	}
	b = append(b, `,"external_ids":`...)
	if e.ExternalIDs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		var buf [8]string
		for i, k := range sortedKeys(e.ExternalIDs, buf[:]) {
			if i > 0 {
				b = append(b, ',')
			}
			str(k)
			b = append(b, ':')
			str(e.ExternalIDs[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"token_hash":`...)
	str(e.TokenHash)
	b = append(b, `,"fingerprint_id":`...)
	if e.FingerprintID == nil {
		b = append(b, "null"...)
	} else {
		str(*e.FingerprintID)
	}
	b = append(b, `,"datapoints":{"status":`...)
	str(string(e.Datapoints.Status))
	b = append(b, `,"source":`...)
	str(string(e.Datapoints.Source))
	if e.Datapoints.AgeSeconds != nil {
		b = append(b, `,"age_seconds":`...)
		b = strconv.AppendInt(b, int64(*e.Datapoints.AgeSeconds), 10)
	}
	b = append(b, `},"decision":`...)
	str(e.Decision)
	b = append(b, `,"reasons":`...)
	if e.Reasons == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range e.Reasons {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"code":`...)
			str(r.Code)
			b = append(b, `,"effect":`...)
			str(r.Effect)
			b = append(b, `,"message":`...)
			str(r.Message)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"policy":{"revision":`...)
	str(e.Policy.Revision)
	b = append(b, `},"degraded":`...)
	b = strconv.AppendBool(b, e.Degraded)
	b = append(b, `,"elapsed_ms":`...)
	if b, ok = appendFloat(b, e.ElapsedMS, ok); !ok {
		return b, false
	}
	b = append(b, "}\n"...)
	return b, ok
}

// appendString appends s quoted, and reports false (appending nothing)
// when encoding/json would escape part of it (see plain).
func appendString(b []byte, s string) ([]byte, bool) {
	if !plain(s) {
		return b, false
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}

// plain reports whether encoding/json writes s as it is between quotes:
// printable ASCII other than '"', '\\' and the HTML characters it escapes
// (<, >, &).
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// appendFloat appends f as encoding/json does, for the numbers it writes
// without an exponent.
func appendFloat(b []byte, f float64, ok bool) ([]byte, bool) {
	if a := math.Abs(f); !ok || math.IsNaN(f) || (a != 0 && (a < 1e-6 || a >= 1e21)) {
		return b, false
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64), true
}

// appendValue appends a value of a decoded JSON document (map[string]any,
// []any, string, json.Number, bool, nil) as encoding/json writes it, with
// object keys sorted.
func appendValue(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), true
	case bool:
		return strconv.AppendBool(b, x), true
	case string:
		return appendString(b, x)
	case json.Number:
		if !validNumber(string(x)) {
			return b, false
		}
		return append(b, x...), true
	case []any:
		if x == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case map[string]any:
		if x == nil {
			return append(b, "null"...), true
		}
		b = append(b, '{')
		var buf [8]string
		for i, k := range sortedKeys(x, buf[:]) {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendString(b, k); !ok {
				return b, false
			}
			b = append(b, ':')
			if b, ok = appendValue(b, x[k]); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	default:
		return b, false
	}
}

// validNumber reports a JSON number literal (RFC 8259), as encoding/json
// checks a json.Number before writing it.
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// sortedKeys returns m's keys in order, in buf when they fit: callers pass
// a small array on their stack.
func sortedKeys[V any](m map[string]V, buf []string) []string {
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
