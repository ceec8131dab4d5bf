package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// decodeValid decodes body, which must be valid JSON (json.Valid), to what
// decodeJSON gives (encoding/json with UseNumber): objects as
// map[string]any, arrays as []any, strings, json.Number, bools and nil.
// Validity lets it skip every check encoding/json's decoder makes again,
// and its reflection: on a /decide body it takes a third of the time and
// memory. FuzzDecodeValid holds it to decodeJSON.
func decodeValid(body []byte) any {
	d := validDecoder{b: body}
	return d.value()
}

// validDecoder walks valid JSON; i is the next byte to read.
type validDecoder struct {
	b []byte
	i int
}

func (d *validDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *validDecoder) value() any {
	d.space()
	switch d.b[d.i] {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		return d.string()
	case 't':
		d.i += len("true")
		return true
	case 'f':
		d.i += len("false")
		return false
	case 'n':
		d.i += len("null")
		return nil
	default:
		j := d.i
		for d.i < len(d.b) && isNumberByte(d.b[d.i]) {
			d.i++
		}
		return json.Number(d.b[j:d.i])
	}
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// object reads an object; d.b[d.i] is its '{'. A repeated key keeps its
// last value, as encoding/json does (checkStructure rejects them anyway).
func (d *validDecoder) object() map[string]any {
	m := make(map[string]any)
	d.members(func(k string) { m[k] = d.value() })
	return m
}

// members reads an object, d.b[d.i] its '{', calling member with each key
// when d.i is at the key's value, which member must read.
func (d *validDecoder) members(member func(key string)) {
	d.i++
	d.space()
	if d.b[d.i] == '}' {
		d.i++
		return
	}
	for {
		d.space()
		k := d.key()
		d.space()
		d.i++ // ':'
		member(k)
		d.space()
		if d.b[d.i] == '}' {
			d.i++
			return
		}
		d.i++ // ','
	}
}

// key reads an object's key as string does, without copying the keys of
// the request contract (the same strings serve every request).
func (d *validDecoder) key() string {
	end := stringEnd(d.b, d.i)
	switch string(d.b[d.i+1 : end-1]) { // compared, not copied
	case "token":
		d.i = end
		return "token"
	case "action":
		d.i = end
		return "action"
	case "external_ids":
		d.i = end
		return "external_ids"
	case "type":
		d.i = end
		return "type"
	case "amount":
		d.i = end
		return "amount"
	case "currency":
		d.i = end
		return "currency"
	}
	return d.string()
}

// array reads an array; d.b[d.i] is its '['. An empty array is an empty,
// non-nil slice, as encoding/json gives it.
func (d *validDecoder) array() []any {
	a := make([]any, 0)
	d.i++
	d.space()
	if d.b[d.i] == ']' {
		d.i++
		return a
	}
	for {
		a = append(a, d.value())
		d.space()
		if d.b[d.i] == ']' {
			d.i++
			return a
		}
		d.i++ // ','
	}
}

// string reads a string; d.b[d.i] is its opening quote. Escapes and invalid
// UTF-8 (which encoding/json replaces with U+FFFD) go through encoding/json.
func (d *validDecoder) string() string {
	start := d.i
	d.i = stringEnd(d.b, d.i)
	raw := d.b[start+1 : d.i-1]
	if bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw) {
		var s string
		_ = json.Unmarshal(d.b[start:d.i], &s) // valid JSON: cannot fail
		return s
	}
	return string(raw)
}

// errBodyTooLarge: the body goes on past readBody's limit.
var errBodyTooLarge = errors.New("request body too large")

// readBody reads r to its end into buf, growing it as needed, as io.ReadAll
// does into a new buffer, and fails with errBodyTooLarge as soon as it has
// read more than limit bytes (what http.MaxBytesReader does, without its
// allocation).
func readBody(r io.Reader, buf []byte, limit int64) ([]byte, error) {
	for {
		if int64(len(buf)) > limit {
			return buf, errBodyTooLarge
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		end := cap(buf) // read no more than one byte past the limit
		if rest := limit + 1 - int64(len(buf)); rest > 0 && int64(end-len(buf)) > rest {
			end = len(buf) + int(rest)
		}
		n, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if int64(len(buf)) > limit {
				return buf, errBodyTooLarge
			}
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// decideFields are the members of a /decide body, decoded as decodeValid
// decodes them, except external_ids: an object of strings is decoded
// straight into the map the engine takes.
type decideFields struct {
	token, action any
	// ids is external_ids; idsErr says why it is not null or an object of
	// strings.
	ids    map[string]string
	idsErr error
	// unknown lists the members outside the contract.
	unknown []string
}

// decodeDecide decodes a /decide body: valid JSON, an object at the top
// (readJSONBody checks both). It builds no map for the top level.
func decodeDecide(body []byte) decideFields {
	var f decideFields
	d := validDecoder{b: body}
	d.space()
	d.members(func(k string) {
		switch k {
		case "token":
			f.token = d.value()
		case "action":
			f.action = d.value()
		case "external_ids":
			f.ids, f.idsErr = d.externalIDs()
		default:
			f.unknown = append(f.unknown, k)
			d.value()
		}
	})
	return f
}

// externalIDs reads the value of external_ids: nil for null, the object
// when it is one of strings, else an error naming the first member that is
// not a string.
func (d *validDecoder) externalIDs() (map[string]string, error) {
	d.space()
	switch d.b[d.i] {
	case 'n':
		d.i += len("null")
		return nil, nil
	case '{':
	default:
		d.value()
		return nil, errExternalIDs
	}
	ids := make(map[string]string)
	var err error
	d.members(func(k string) {
		d.space()
		if d.b[d.i] != '"' {
			d.value()
			if err == nil {
				err = invalidRequest("external_ids[%q] must be a string", k)
			}
			return
		}
		ids[k] = d.string()
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}
