package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-engine/verdict/api"
	"github.com/verdict-engine/verdict/engine/decisionlog"
)

// BenchmarkDecideProduction is a cached /decide on the production hot path,
// with the request mix of bench/run.sh: the five demo tokens in turn, the
// checkout amount varying, behind an API key, with metrics, the access log
// (JSON, discarded) and the decision log to a file all on. No network.
func BenchmarkDecideProduction(b *testing.B) {
	s := newStack(b, nil)
	dlog, err := decisionlog.New(decisionlog.Config{File: filepath.Join(b.TempDir(), "decisions.log")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = dlog.Close() })
	h := api.New(api.Config{
		Logger:      benchLogger(),
		Keys:        api.NewKeys([]api.Key{{Name: "bench", Secret: "bench_key_0123456789abcdef"}}),
		Metrics:     api.NewMetrics(api.MetricSources{}, nil),
		DecisionLog: dlog,
	}, s.engine)
	tokens := []string{"demo-vpn", "demo-human", "demo-bot", "demo-tor", "demo-tamper"}
	bodies := make([]string, 1000)
	for n := range bodies {
		bodies[n] = fmt.Sprintf(`{"token":%q,"action":{"type":"checkout","amount":%d,"currency":"USD"},"external_ids":{"accountId":"1234567890"}}`,
			tokens[n%len(tokens)], n)
	}
	do := func(body string) {
		req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer bench_key_0123456789abcdef")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("POST /decide = %d %s", rec.Code, rec.Body)
		}
	}
	for _, body := range bodies[:3*len(tokens)] { // fetched, then cached and staged
		do(body)
		s.cache.Wait()
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		do(bodies[n%len(bodies)])
		n++
	}
}
