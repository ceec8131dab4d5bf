package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/verdict-engine/verdict/engine"
)

// TestWriteJSON: writeJSON answers with the status, content type and bytes
// of gin's c.JSON, HTML escaping included, however large the answer and
// however often the pooled buffer is reused.
func TestWriteJSON(t *testing.T) {
	gin.SetMode(gin.TestMode)
	d := engine.Decision{ID: "01a21804-0b04-79ae-b9c6-2a38f8ac9372", Decision: engine.Challenge,
		Reasons:       []engine.Reason{{Code: "anonymizing_proxy", Effect: "challenge", Message: `VPN <b>"x"</b> & € on checkout`}},
		FingerprintID: "fp_1", Status: engine.StatusOK, Origin: engine.OriginCache, Revision: "608c56c60024"}
	big := d
	big.Reasons = []engine.Reason{{Code: "big", Effect: "deny", Message: strings.Repeat("m", 40<<10)}}
	for _, tc := range []struct {
		name   string
		status int
		v      any
	}{
		{"a decision", http.StatusOK, NewDecideResponse(d, 1234567*time.Nanosecond)},
		{"a larger answer than the pool keeps", http.StatusOK, NewDecideResponse(big, time.Millisecond)},
		{"the decision again", http.StatusOK, NewDecideResponse(d, 0)},
		{"an identity", http.StatusOK, identifyResponse{Datapoints: DatapointsInfo{Status: engine.StatusNotFound, Source: engine.OriginUpstream}}},
		{"another status", http.StatusAccepted, map[string]any{"a": []int{1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, want := httptest.NewRecorder(), httptest.NewRecorder()
			c, _ := gin.CreateTestContext(got)
			writeJSON(c, tc.status, tc.v)
			c2, _ := gin.CreateTestContext(want)
			c2.JSON(tc.status, tc.v)
			if got.Code != want.Code || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") || got.Body.String() != want.Body.String() {
				t.Errorf("writeJSON: %d %q %.200s\nc.JSON:    %d %q %.200s", got.Code, got.Header().Get("Content-Type"), got.Body,
					want.Code, want.Header().Get("Content-Type"), want.Body)
			}
		})
	}
	t.Run("an answer that does not encode", func(t *testing.T) {
		rec := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(rec)
		writeJSON(c, http.StatusOK, map[string]any{"f": func() {}})
		if c.Writer.Status() != http.StatusInternalServerError || len(c.Errors) != 1 {
			t.Errorf("status %d, errors %v; want 500 and the encoding error", c.Writer.Status(), c.Errors)
		}
	})
}
