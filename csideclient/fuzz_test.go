package csideclient

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/verdict-engine/verdict/engine"
)

// FuzzPayload feeds arbitrary upstream answers to the payload checks: they
// never panic, and whatever the client accepts the engine can parse, so a
// bad answer is unavailable at the client and never an error later.
func FuzzPayload(f *testing.F) {
	files, _ := filepath.Glob("csidetest/testdata/*.json")
	if len(files) == 0 {
		f.Fatal("no seed payloads")
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"a": "\xff"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := validateClientID("/id", body); err == nil && len(body) == 0 {
			t.Fatal("accepted an empty fingerprint ID")
		}
		ok, err := validatePayload("/client", body)
		if err != nil {
			return
		}
		if _, err := engine.ParsePayload(ok); err != nil {
			t.Fatalf("the client accepted a payload the engine cannot parse: %v\n%q", err, body)
		}
	})
}
