package api

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/verdict-engine/verdict/engine"
)

// seed adds every file matching glob to f's corpus.
func seed(f *testing.F, glob string) {
	f.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in %s: %v", glob, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDecodeDecide feeds arbitrary bodies to the /decide request decoder:
// it never panics, what it accepts meets the contract, and it agrees with
// the generic path (decodeObject, then each member's parser).
func FuzzDecodeDecide(f *testing.F) {
	seed(f, "testdata/requests/*.json")
	f.Add([]byte(`{"external_ids":{"a":1,"b":"x","c":[]},"token":"t","action":{"type":"login"}}`))
	f.Add([]byte(`{"to\u006ben":"t","action":{"type":"login"},"external_ids":null,"x":1,"a":2}`))
	f.Add([]byte(`{"token":"t","action":{"type":"login"},"external_ids":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/decide", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		fields, err := readJSONBody(req, DefaultMaxBodyBytes, decodeDecide)
		if err != nil {
			return
		}
		r, err := parseDecide(fields)
		want, wantErr := referenceDecide(decodeObject(bytes.TrimLeft(body, " \t\r\n")))
		switch {
		case (err == nil) != (wantErr == nil):
			t.Fatalf("parseDecide(%s): error %v, the generic path's %v", body, err, wantErr)
		case err != nil && err.Error() != wantErr.Error() &&
			// Of several members of external_ids that are not strings,
			// the generic path names one at random, decodeDecide the first.
			!(strings.HasPrefix(err.Error(), "external_ids[") && strings.HasPrefix(wantErr.Error(), "external_ids[")):
			t.Fatalf("parseDecide(%s): error %q, the generic path's %q", body, err, wantErr)
		case err == nil && !reflect.DeepEqual(r, want):
			t.Fatalf("parseDecide(%s) = %#v, the generic path gives %#v", body, r, want)
		}
		if err != nil {
			return
		}
		if r.Token == "" || len(r.Token) > MaxTokenBytes || !printable(r.Token) {
			t.Fatalf("accepted token %q", r.Token)
		}
		if typ, _ := r.Action["type"].(string); !actionType.MatchString(typ) {
			t.Fatalf("accepted action.type %q", typ)
		}
	})
}

// referenceDecide validates a /decide body decoded as a generic object, as
// parseDecide validates decodeDecide's fields.
func referenceDecide(fields map[string]any) (engine.Request, error) {
	if err := checkFields(fields, decideMembers...); err != nil {
		return engine.Request{}, err
	}
	token, err := parseToken(fields["token"])
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

// keyError matches every error ParseKeys returns; %s is only ever a key name.
var keyError = regexp.MustCompile(`^(line \d+: want name:key|` +
	`line \d+: key name must be 1-64 of A-Z a-z 0-9 _ \. -|` +
	`line \d+ \([A-Za-z0-9_.-]{1,64}\): key shorter than \d+ characters|` +
	`line \d+ \([A-Za-z0-9_.-]{1,64}\): key must be printable ASCII without spaces|` +
	`line \d+: key name [A-Za-z0-9_.-]{1,64} already used on line \d+|` +
	`line \d+ \([A-Za-z0-9_.-]{1,64}\): same key as line \d+|` +
	`reading keys: .*|no keys)$`)

// FuzzParseKeys feeds arbitrary key files to the parser: it never panics,
// what it accepts meets the rules, and its errors never show a key.
func FuzzParseKeys(f *testing.F) {
	seed(f, "testdata/keys.txt")
	f.Add([]byte("a:0123456789abcdef\na:0123456789abcdef"))
	f.Fuzz(func(t *testing.T, text []byte) {
		keys, err := ParseKeys(bytes.NewReader(text))
		if err != nil {
			// An error is one of ParseKeys' messages with nothing filled in
			// but line numbers and a key name (names are not secret, and are
			// printable ASCII: the name pattern admits no ':' or space).
			if !keyError.MatchString(err.Error()) {
				t.Fatalf("error %q is not one of ParseKeys' messages: it may show a key", err)
			}
			return
		}
		for _, k := range keys {
			if !keyName.MatchString(k.Name) || len(k.Secret) < MinKeyLength || !printable(k.Secret) {
				t.Fatalf("accepted key %+v", k)
			}
		}
	})
}

// FuzzCheckStructure holds checkStructure, a scanner written for speed, to
// checkStructureReference, written on encoding/json's tokenizer: on every
// valid JSON body they accept and reject alike, with the same message.
func FuzzCheckStructure(f *testing.F) {
	seed(f, "testdata/requests/*.json")
	f.Add([]byte(`{"a": {"b": [1, 2, {"c": 1e400}]}}`))
	f.Add([]byte(`{"a": 1, "\u0061": 2}`))
	f.Add([]byte(`{"k": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`))
	f.Add([]byte(`{"a\"b": {"x": -0.000000000000000000000000000000001}, "a\"b": true}`))
	// The scanner keeps the open objects' keys in one list: a nested object's
	// keys must not count as its parent's, and an object past 16 keys moves
	// to a set of its own.
	f.Add([]byte(`{"a": 1, "b": {"a": 1, "b": {"c": 2}}, "c": 3, "a": 4}`))
	f.Add([]byte(`{"a": {"x": 1}, "b": {"x": 2}, "x": 3}`))
	f.Add([]byte(`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":{"k0":0},"k17":17,"k0":0}`))
	f.Add([]byte(`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":{"k0":0,"k0":1}}`))
	f.Add([]byte(`{"n": 99999999999999999999999999999999, "m": 1E308, "o": 1e309}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		got, want := checkStructure(body), checkStructureReference(body)
		if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Fatalf("checkStructure(%s) = %v, the reference says %v", body, got, want)
		}
	})
}

// FuzzDecodeValid holds the request path's decoder to encoding/json's, with
// numbers as json.Number, on every valid JSON document.
func FuzzDecodeValid(f *testing.F) {
	seed(f, "testdata/requests/*.json")
	f.Add([]byte(` [1, -2.5e+3, "a\"b\\u00e9\ud83d\ude00", true, false, null, {}, [], {"x": []}] `))
	f.Add([]byte(`{"a": 1, "a": {"b": 2}}`))
	f.Add([]byte("\"caf\xc3\xa9 \xff\xfe invalid utf-8\""))
	f.Add([]byte(`{"type":"checkout","amount":0.1e-7,"currency":"€","nested":{"deep":[[{"k":"\t"}]]}}`))
	f.Add([]byte(`-0`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		got, want := decodeValid(body), decodeJSON(body)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeValid(%q) = %#v, encoding/json gives %#v", body, got, want)
		}
	})
}
