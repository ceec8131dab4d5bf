package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// checkStructureReference is checkStructure as first written, on
// encoding/json's tokenizer: simpler to read, and slower (allocations per
// token, a path string per container). FuzzCheckStructure holds the fast
// scanner to it.
func checkStructureReference(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		path   string
		key    string // current key (objects) awaiting its value
		index  int    // next index (arrays)
		want   bool   // objects: true when the next token is a key
	}
	var stack []*frame
	pathOf := func() string {
		if len(stack) == 0 {
			return "body"
		}
		f := stack[len(stack)-1]
		if f.object {
			return f.path + "." + f.key
		}
		return fmt.Sprintf("%s[%d]", f.path, f.index)
	}
	afterValue := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.object {
			f.want = true
		} else {
			f.index++
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalidRequest("request body: %v", err)
		}
		if len(stack) > 0 {
			if f := stack[len(stack)-1]; f.object && f.want {
				if d, ok := tok.(json.Delim); ok && d == '}' {
					stack = stack[:len(stack)-1]
					afterValue()
					continue
				}
				key := tok.(string)
				if f.keys[key] {
					return invalidRequest("%s: duplicate key %q", strings.TrimPrefix(f.path+"."+key, "body."), key)
				}
				f.keys[key], f.key, f.want = true, key, false
				continue
			}
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) >= MaxDepth {
					return invalidRequest("%s: nested deeper than %d levels", strings.TrimPrefix(pathOf(), "body."), MaxDepth)
				}
				stack = append(stack, &frame{object: v == '{', keys: map[string]bool{}, path: pathOf(), want: v == '{'})
			case ']':
				stack = stack[:len(stack)-1]
				afterValue()
			}
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if len(v) > maxNumberLen || err != nil || math.IsInf(f, 0) {
				return invalidRequest("%s: number %.40s is too large (at most %d characters, within float64)",
					strings.TrimPrefix(pathOf(), "body."), v, maxNumberLen)
			}
			afterValue()
		default:
			afterValue()
		}
	}
}
