// Command harness runs the helper servers of bench/run.sh:
//
//	harness noop ADDR             a Gin handler that only decodes and encodes JSON: the ceiling
//	harness fake ADDR LATENCY     the fake cside (csidetest) on ADDR, every answer delayed by LATENCY
//	harness opa-input TOKEN       prints the OPA input (action, datapoints, upstream) for a demo token
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
)

func main() {
	if len(os.Args) < 3 {
		log.Fatal("usage: harness noop ADDR | fake ADDR LATENCY | opa-input TOKEN")
	}
	switch os.Args[1] {
	case "noop":
		log.Fatal(serve(os.Args[2], noop()))
	case "fake":
		latency := time.Duration(0)
		if len(os.Args) > 3 {
			var err error
			if latency, err = time.ParseDuration(os.Args[3]); err != nil {
				log.Fatal(err)
			}
		}
		fake := csidetest.NewServer() // the handler; served on ADDR below
		fake.SetLatency(latency)
		log.Fatal(serve(os.Args[2], fake))
	case "opa-input":
		payload, ok := csidetest.Payload(os.Args[2])
		if !ok {
			log.Fatal("no payload for that token: want a demo token such as demo-vpn")
		}
		var fp struct {
			Identification struct{ FingerprintID string } `json:"identification"`
		}
		_ = json.Unmarshal(payload, &fp)
		input := map[string]any{
			"action":         map[string]any{"type": "checkout", "amount": 900, "currency": "USD"},
			"external_ids":   map[string]any{"accountId": "1234567890"},
			"datapoints":     json.RawMessage(payload),
			"upstream":       map[string]any{"status": "ok", "source": "cache", "age_seconds": 12},
			"fingerprint_id": fp.Identification.FingerprintID,
		}
		b, _ := json.Marshal(map[string]any{"input": input})
		fmt.Println(string(b))
	default:
		log.Fatal("unknown helper: want noop, fake or opa-input")
	}
}

func serve(addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

// noop decodes the request body as JSON and answers a decision-sized JSON
// object: what any Go JSON service pays before doing anything.
func noop() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/decide", func(c *gin.Context) {
		var body map[string]any
		if err := c.ShouldBindJSON(&body); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{
			"decision_id": "00000000-0000-7000-8000-000000000000", "decision": "challenge",
			"reasons":        []gin.H{{"code": "anonymizing_proxy", "effect": "challenge", "message": "VPN or proxy on checkout of 900 USD"}},
			"fingerprint_id": "fp_VpnUser00000000001", "datapoints": gin.H{"status": "ok", "source": "cache"},
			"policy": gin.H{"revision": "000000000000"}, "degraded": false, "elapsed_ms": 0.01,
		})
	})
	return r
}
