// Command genlog writes a synthetic decision log for benchmarking `verdict
// replay`: n real decisions of the shipped policies over the demo payloads
// (and distinct demo-human-<k> tokens), each with its payload, in the exact
// format `serve --decision-log-datapoints` writes.
//
//	go run ./bench/genlog -n 1000000 -tokens 20000 -out /tmp/decisions.jsonl
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/engine/decisionlog"
	"github.com/verdict-engine/verdict/policies"
)

func main() {
	n := flag.Int("n", 1_000_000, "decisions to write")
	tokens := flag.Int("tokens", 20_000, "distinct tokens (each with its own payload)")
	out := flag.String("out", "decisions.jsonl", "output file")
	flag.Parse()
	if err := run(*n, *tokens, *out); err != nil {
		log.Fatal(err)
	}
}

func run(n, tokens int, out string) error {
	ctx := context.Background()
	set, err := engine.Compile(ctx, policies.FS())
	if err != nil {
		return err
	}
	scenarios := []string{"demo-human", "demo-bot", "demo-goodbot", "demo-vpn", "demo-tor", "demo-incognito", "demo-throwaway", "demo-tamper", "demo-noid"}
	payloads := make([]*engine.Payload, tokens)
	for k := range payloads {
		token := scenarios[k%len(scenarios)]
		if k%7 == 6 {
			token = fmt.Sprintf("demo-human-%d", k) // a payload of its own
		}
		raw, _ := csidetest.Payload(token)
		if payloads[k], err = engine.ParsePayload(raw); err != nil {
			return err
		}
	}
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) { // the log appends
		return err
	}
	l, err := decisionlog.New(decisionlog.Config{File: out, IncludeDatapoints: true, Buffer: 65536, MaxSizeMB: 1 << 20})
	if err != nil {
		return err
	}
	actions := []string{"login", "signup", "checkout", "password_reset", "browse"}
	workers := runtime.GOMAXPROCS(0)
	records := make(chan decisionlog.Record, 1024)
	logged := make(chan struct{})
	go func() { // the only caller of Log, so that a drop is its own
		defer close(logged)
		for r := range records {
			for {
				before := l.Dropped()
				l.Log(r)
				if l.Dropped() == before {
					break
				}
				time.Sleep(time.Millisecond) // the writer is behind: wait, never drop
			}
		}
	}()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				action := map[string]any{"type": actions[i%len(actions)]}
				if action["type"] == "checkout" {
					action["amount"] = json.Number(fmt.Sprint(i % 1000))
					action["currency"] = "USD"
				}
				req := engine.Request{Token: fmt.Sprintf("tok-%d", i%tokens), Action: action}
				dp := engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginCache, Payload: payloads[i%tokens]}
				d, err := set.Eval(ctx, req, dp)
				if err != nil {
					log.Fatal(err)
				}
				d.ID = fmt.Sprintf("gen-%d", i)
				records <- decisionlog.Record{Decision: d, Request: req, At: start}
			}
		})
	}
	wg.Wait()
	close(records)
	<-logged
	if err := l.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %d decisions to %s in %v\n", l.Written(), out, time.Since(start).Round(time.Millisecond))
	return nil
}
