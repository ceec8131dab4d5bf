package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Structural limits on request bodies, beyond the size cap.
const (
	// MaxDepth is the deepest nesting of objects and arrays accepted.
	MaxDepth = 32
	// maxNumberLen bounds a number's literal: 32 characters is more than
	// any amount or count needs.
	maxNumberLen = 32
)

// checkStructure rejects valid JSON that is still unsafe to hand to
// policies: duplicate object keys (which one would a policy see?), nesting
// deeper than MaxDepth, and numbers that are huge or beyond float64. The
// error names the path of the offending value.
//
// body must be valid JSON (json.Valid): the scan relies on it and checks
// only the three limits. On a body that passes, it allocates only for
// objects of more than 16 keys, escaped keys, and more than 64 keys open
// at once.
func checkStructure(body []byte) error {
	var frames [MaxDepth]frame
	stack := frames[:0]
	var keyBuf [64][]byte
	keys := keyBuf[:0] // the keys of the open objects, innermost last
	afterValue := func() {
		if len(stack) > 0 {
			if f := &stack[len(stack)-1]; f.object {
				f.wantKey = true
			} else {
				f.index++
			}
		}
	}
	for i := 0; i < len(body); {
		switch c := body[i]; c {
		case '{', '[':
			if len(stack) >= MaxDepth {
				return invalidRequest("%s: nested deeper than %d levels", pathOf(stack), MaxDepth)
			}
			stack = append(stack, frame{object: c == '{', wantKey: c == '{', keys: len(keys)})
			i++
		case '}', ']':
			keys = keys[:stack[len(stack)-1].keys]
			stack = stack[:len(stack)-1]
			afterValue()
			i++
		case '"':
			end := stringEnd(body, i)
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
				f := &stack[n-1]
				key := body[i+1 : end-1]
				if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) { // as encoding/json decodes it
					var k string
					_ = json.Unmarshal(body[i:end], &k) // valid JSON: cannot fail
					key = []byte(k)
				}
				f.key = key
				var dup bool
				if keys, dup = f.seen(keys, key); dup {
					return invalidRequest("%s: duplicate key %q", pathOf(stack), key)
				}
				f.wantKey = false
			} else {
				afterValue()
			}
			i = end
		case 't', 'f', 'n': // true, false, null
			for i < len(body) && body[i] >= 'a' && body[i] <= 'z' {
				i++
			}
			afterValue()
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			j := i
			for j < len(body) && strings.IndexByte("+-.0123456789eE", body[j]) >= 0 {
				j++
			}
			if num := body[i:j]; len(num) > maxNumberLen {
				return invalidRequest("%s: number %.40s is too large (at most %d characters, within float64)", pathOf(stack), num, maxNumberLen)
			} else if bytes.ContainsAny(num, "eE") && !finite(num) { // 32 digits without an exponent are finite
				return invalidRequest("%s: number %s is too large (at most %d characters, within float64)", pathOf(stack), num, maxNumberLen)
			}
			afterValue()
			i = j
		default: // whitespace, ':' and ','
			i++
		}
	}
	return nil
}

// frame is an object or array checkStructure is inside.
type frame struct {
	object  bool
	wantKey bool                // object: the next string is a key
	key     []byte              // object: the current key, decoded
	index   int                 // array: the current index
	keys    int                 // object: where its keys start in checkStructure's list
	set     map[string]struct{} // keys, once there are many
}

// seen reports whether key was seen before in the object, and records it:
// in keys, the list of the open objects' keys, while the object has at
// most 16; in a set of its own past that. It returns keys updated.
func (f *frame) seen(keys [][]byte, key []byte) ([][]byte, bool) {
	const linear = 16
	if f.set == nil {
		mine := keys[f.keys:]
		for _, k := range mine {
			if bytes.Equal(k, key) {
				return keys, true
			}
		}
		if len(mine) < linear {
			return append(keys, key), false
		}
		f.set = make(map[string]struct{}, 2*linear)
		for _, k := range mine {
			f.set[string(k)] = struct{}{}
		}
		keys = keys[:f.keys]
	}
	if _, ok := f.set[string(key)]; ok {
		return keys, true
	}
	f.set[string(key)] = struct{}{}
	return keys, false
}

// pathOf names the value the innermost frame is at: token, action.amount,
// action.items[2]; "body" for the body itself.
func pathOf(stack []frame) string {
	var b strings.Builder
	b.WriteString("body")
	for _, f := range stack {
		if f.object {
			b.WriteString(".")
			b.Write(f.key)
		} else {
			fmt.Fprintf(&b, "[%d]", f.index)
		}
	}
	return strings.TrimPrefix(b.String(), "body.")
}

// finite reports whether num, a JSON number, is within float64.
func finite(num []byte) bool {
	f, err := strconv.ParseFloat(string(num), 64)
	return err == nil && !math.IsInf(f, 0)
}

// stringEnd returns the index just past the string starting at body[i],
// which is a '"' of valid JSON.
func stringEnd(body []byte, i int) int {
	for i++; ; i++ {
		switch body[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}
