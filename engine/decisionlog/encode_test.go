package decisionlog

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/engine"
)

// encoded is e as encoding/json writes it through the Logger's encoder.
func encoded(t testing.TB, e *Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(e); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sampleEntry() Entry {
	fp, age := "fp_VpnUser00000000001", 42
	return Entry{
		DecisionID:    "01a2177b-f8db-74d1-9a5b-d9e68fda8a7b",
		Timestamp:     time.Date(2026, 11, 26, 11, 30, 0, 123456789, time.UTC),
		RequestID:     "req-1",
		Key:           "bench",
		Action:        map[string]any{"type": "checkout", "amount": json.Number("900"), "currency": "USD", "items": []any{map[string]any{"sku": "a", "qty": json.Number("2")}, true, nil}},
		ExternalIDs:   map[string]string{"email": "3f2a9c1d0b7e", "accountId": "a1b2c3d4e5f6"},
		TokenHash:     "0123456789ab",
		FingerprintID: &fp,
		Datapoints:    Datapoints{Status: engine.StatusOK, Source: engine.OriginCache, AgeSeconds: &age},
		Decision:      engine.Challenge,
		Reasons:       []engine.Reason{{Code: "anonymizing_proxy", Effect: "challenge", Message: "VPN or proxy on checkout of 900 USD"}},
		Policy:        Policy{Revision: "608c56c60024"},
		Degraded:      false,
		ElapsedMS:     0.041,
	}
}

// TestAppendEntry: every line appendEntry writes is byte for byte the line
// encoding/json writes, and it leaves to encoding/json what it cannot copy.
func TestAppendEntry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Entry)
		wantOK bool
	}{
		{"the common line", func(*Entry) {}, true},
		{"no request ID, key, fingerprint or age", func(e *Entry) {
			e.RequestID, e.Key, e.FingerprintID, e.Datapoints.AgeSeconds = "", "", nil, nil
		}, true},
		{"no reasons, empty action, no IDs", func(e *Entry) {
			e.Reasons, e.Action, e.ExternalIDs = []engine.Reason{}, map[string]any{}, map[string]string{}
		}, true},
		{"nil reasons, action and IDs", func(e *Entry) { e.Reasons, e.Action, e.ExternalIDs = nil, nil, nil }, true},
		{"degraded, zero elapsed", func(e *Entry) { e.Degraded, e.ElapsedMS = true, 0 }, true},
		{"elapsed past a second", func(e *Entry) { e.ElapsedMS = 1234.5 }, true},
		{"numbers of every shape", func(e *Entry) {
			e.Action["n"] = []any{json.Number("-0"), json.Number("1.5e-7"), json.Number("12E+3"), json.Number("0.25")}
		}, true},
		{"a timestamp with whole seconds", func(e *Entry) { e.Timestamp = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }, true},
		{"a message to escape", func(e *Entry) { e.Reasons[0].Message = `amount "900" <script>` }, false},
		{"non-ASCII in the action", func(e *Entry) { e.Action["currency"] = "€" }, false},
		{"a key to escape", func(e *Entry) { e.Action["a&b"] = true }, false},
		{"an invalid json.Number", func(e *Entry) { e.Action["amount"] = json.Number("01") }, false},
		{"an empty json.Number", func(e *Entry) { e.Action["amount"] = json.Number("") }, false},
		{"a float64 (not from decoding)", func(e *Entry) { e.Action["amount"] = 900.0 }, false},
		{"a tiny elapsed time", func(e *Entry) { e.ElapsedMS = 1e-9 }, false},
		{"a shadow decision", func(e *Entry) { e.Shadow = &Shadow{Decision: engine.Allow, Reasons: []engine.Reason{}} }, false},
		{"a payload", func(e *Entry) { e.Datapoints.Payload = json.RawMessage(`{"a": 1}`) }, false},
		{"a year past 9999", func(e *Entry) { e.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := sampleEntry()
			tc.edit(&e)
			got, ok := appendEntry(nil, &e)
			if ok != tc.wantOK {
				t.Fatalf("appendEntry ok = %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if want := encoded(t, &e); !bytes.Equal(got, want) {
				t.Errorf("appendEntry wrote\n%s\nencoding/json writes\n%s", got, want)
			}
		})
	}
}

// FuzzAppendEntry holds appendEntry to encoding/json on arbitrary strings,
// actions and elapsed times: whatever it writes, encoding/json writes too.
func FuzzAppendEntry(f *testing.F) {
	f.Add("VPN or proxy on checkout of 900 USD", []byte(`{"type":"checkout","amount":900,"currency":"USD"}`), 0.041, "accountId", "req-1")
	f.Add("tampering \u2028 <b>", []byte(`{"type":"login","x":[1,{"y":null}],"z":"\u00e9"}`), 1e21, "", "\x7f")
	f.Add("", []byte(`{"a":-0.0e+5,"b":[],"c":{}}`), -2.5, "a\"b", "")
	f.Fuzz(func(t *testing.T, message string, action []byte, elapsed float64, idKey, requestID string) {
		e := sampleEntry()
		e.Reasons[0].Message, e.ElapsedMS, e.RequestID = message, elapsed, requestID
		e.ExternalIDs = map[string]string{idKey: message}
		dec := json.NewDecoder(bytes.NewReader(action))
		dec.UseNumber()
		var a map[string]any
		if dec.Decode(&a) == nil {
			e.Action = a
		}
		got, ok := appendEntry(nil, &e)
		if !ok {
			return
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(&e); err != nil {
			t.Fatalf("appendEntry wrote a line encoding/json refuses (%v): %s", err, got)
		}
		if !bytes.Equal(got, buf.Bytes()) {
			t.Fatalf("appendEntry wrote\n%s\nencoding/json writes\n%s", got, buf.Bytes())
		}
		if math.IsNaN(elapsed) {
			t.Fatal("appendEntry accepted NaN")
		}
	})
}

func BenchmarkAppendEntry(b *testing.B) {
	e := sampleEntry()
	b.Run("appendEntry", func(b *testing.B) {
		b.ReportAllocs()
		var line []byte
		for b.Loop() {
			line, _ = appendEntry(line[:0], &e)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for b.Loop() {
			buf.Reset()
			_ = enc.Encode(&e)
		}
	})
}
