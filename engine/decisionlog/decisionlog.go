// Package decisionlog writes every decision as one JSON line, off the
// request path: Log hands the decision to a bounded queue and returns at
// once; one goroutine builds the line, masks it and writes it to the sinks
// (a size-rotated file, stdout, or both). When the queue is full, decisions
// are dropped and counted, never waited for.
//
// Lines never hold a session token (only TokenHash) and hold external ID
// values only hashed. The datapoints payload is included only when asked
// for, and masks remove or hash any other field by JSON pointer (RFC 6901).
package decisionlog

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-openapi/jsonpointer"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/verdict-engine/verdict/engine"
)

// Defaults for Config's zero values.
const (
	DefaultBuffer     = 4096
	DefaultMaxSizeMB  = 100
	DefaultMaxBackups = 10
)

// Config configures a Logger. At least one sink is required.
type Config struct {
	// File, if set, is the log file; it rotates at MaxSizeMB, keeping
	// MaxBackups old files (lumberjack).
	File string
	// MaxSizeMB is the size at which File rotates. Zero means 100.
	MaxSizeMB int
	// MaxBackups is how many rotated files are kept. Zero means 10.
	MaxBackups int
	// Stdout, if set, receives every line too (os.Stdout in production).
	Stdout io.Writer
	// Buffer bounds the decisions waiting to be written. Zero means 4096.
	Buffer int
	// IncludeDatapoints puts the cside payload in each line (needed to
	// replay decisions; it may hold personal data: mask what you must).
	IncludeDatapoints bool
	// Masks remove or hash fields of every line.
	Masks []Mask
	// Shadow, if set, evaluates each decision with the shadow policy set
	// (engine.Engine.EvaluateShadow) before its line is written, and the
	// line carries the shadow decision. It runs on the writer goroutine.
	Shadow func(engine.Request, engine.Decision) (engine.Decision, bool)
}

// Mask removes (or hashes) the field a JSON pointer names in every line,
// e.g. /action/email or /datapoints/payload/ip/address. A pointer that
// matches nothing in a line is ignored.
type Mask struct {
	Pointer string
	// Hash replaces the value by TokenHash of its JSON instead of removing it.
	Hash bool
}

// ParseMasks parses "POINTER[=remove|hash],..." as flags give it.
func ParseMasks(s string) ([]Mask, error) {
	var masks []Mask
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		ptr, mode, _ := strings.Cut(item, "=")
		m := Mask{Pointer: ptr}
		switch mode {
		case "", "remove":
		case "hash":
			m.Hash = true
		default:
			return nil, fmt.Errorf("mask %q: mode must be remove or hash", item)
		}
		if _, err := jsonpointer.New(ptr); err != nil || ptr == "" {
			return nil, fmt.Errorf("mask %q: not a JSON pointer such as /action/email", item)
		}
		masks = append(masks, m)
	}
	return masks, nil
}

// Record is what the request path hands over for one decision.
type Record struct {
	Decision  engine.Decision
	Request   engine.Request
	RequestID string
	// KeyName names the caller's API key (never the key itself).
	KeyName string
	At      time.Time
	Elapsed time.Duration
}

// Entry is one line of the decision log.
type Entry struct {
	DecisionID    string            `json:"decision_id"`
	Timestamp     time.Time         `json:"timestamp"`
	RequestID     string            `json:"request_id,omitempty"`
	Key           string            `json:"key,omitempty"`
	Action        map[string]any    `json:"action"`
	ExternalIDs   map[string]string `json:"external_ids"`
	TokenHash     string            `json:"token_hash"`
	FingerprintID *string           `json:"fingerprint_id"`
	Datapoints    Datapoints        `json:"datapoints"`
	Decision      string            `json:"decision"`
	Reasons       []engine.Reason   `json:"reasons"`
	Policy        Policy            `json:"policy"`
	Degraded      bool              `json:"degraded"`
	Shadow        *Shadow           `json:"shadow,omitempty"`
	ElapsedMS     float64           `json:"elapsed_ms"`
}

// Shadow is what the shadow policy set decided for the same input.
type Shadow struct {
	Decision string          `json:"decision"`
	Reasons  []engine.Reason `json:"reasons"`
	Policy   Policy          `json:"policy"`
}

// Datapoints says what the decision saw of cside; Payload only with
// Config.IncludeDatapoints.
type Datapoints struct {
	Status     engine.Status   `json:"status"`
	Source     engine.Origin   `json:"source"`
	AgeSeconds *int            `json:"age_seconds,omitempty"`
	Payload    json.RawMessage `json:"payload,omitempty"`
}

// Policy names the revision that decided.
type Policy struct {
	Revision string `json:"revision"`
}

// Hash is how lines identify secrets and personal values: the first 12 hex
// digits of their SHA-256 (the same as the API's token hash).
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// Logger writes decision lines. It is safe for concurrent use.
type Logger struct {
	cfg   Config
	masks []jsonpointer.Pointer
	queue chan Record
	out   *bufio.Writer
	enc   *json.Encoder // writes to out
	// Scratch space write reuses from line to line (it runs on the
	// writer's goroutine alone): the line appendEntry builds, and what the
	// entry's map and pointers refer to, so that a line allocates nothing
	// of its own.
	line    []byte
	ids     map[string]string
	fp      string
	age     int
	closers []io.Closer
	dropped atomic.Uint64
	written atomic.Uint64
	errs    atomic.Uint64
	done    sync.WaitGroup
}

// New validates cfg, opens the sinks and starts the writer.
func New(cfg Config) (*Logger, error) {
	if cfg.File == "" && cfg.Stdout == nil {
		return nil, errors.New("decisionlog: no sink: set a file, stdout or both")
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.MaxSizeMB <= 0 {
		cfg.MaxSizeMB = DefaultMaxSizeMB
	}
	if cfg.MaxBackups <= 0 {
		cfg.MaxBackups = DefaultMaxBackups
	}
	l := &Logger{cfg: cfg, queue: make(chan Record, cfg.Buffer)}
	for _, m := range cfg.Masks {
		p, err := jsonpointer.New(m.Pointer)
		if err != nil {
			return nil, fmt.Errorf("decisionlog: mask %q: %w", m.Pointer, err)
		}
		l.masks = append(l.masks, p)
	}
	var sinks []io.Writer
	if cfg.File != "" {
		f := &lumberjack.Logger{Filename: cfg.File, MaxSize: cfg.MaxSizeMB, MaxBackups: cfg.MaxBackups}
		if _, err := f.Write(nil); err != nil {
			return nil, fmt.Errorf("decisionlog: opening %s: %w", cfg.File, err)
		}
		sinks = append(sinks, f)
		l.closers = append(l.closers, f)
	}
	if cfg.Stdout != nil {
		sinks = append(sinks, cfg.Stdout)
	}
	l.out = bufio.NewWriterSize(io.MultiWriter(sinks...), 64<<10)
	l.enc = json.NewEncoder(l.out)
	l.done.Go(l.run)
	return l, nil
}

// Log queues r without ever blocking; when the queue is full, r is dropped
// and counted.
func (l *Logger) Log(r Record) {
	select {
	case l.queue <- r:
	default:
		l.dropped.Add(1)
	}
}

// Dropped reports decisions not logged because the queue was full.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Written reports lines written.
func (l *Logger) Written() uint64 { return l.written.Load() }

// Errors reports lines that could not be encoded or written.
func (l *Logger) Errors() uint64 { return l.errs.Load() }

// Close writes what is queued, flushes and closes the sinks. Log must not
// be called afterwards.
func (l *Logger) Close() error {
	close(l.queue)
	l.done.Wait()
	err := l.out.Flush()
	for _, c := range l.closers {
		err = errors.Join(err, c.Close())
	}
	return err
}

// flushEvery is how long a written line may wait in the 64 KiB buffer
// before it reaches the file.
const flushEvery = 100 * time.Millisecond

// run writes queued decisions. Lines reach the sinks when the buffer fills,
// every flushEvery, and on Close: flushing whenever the queue ran empty
// cost a write(2) per decision at moderate load.
func (l *Logger) run() {
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case r, ok := <-l.queue:
			if !ok {
				return
			}
			if err := l.write(r); err != nil {
				l.errs.Add(1)
			} else {
				l.written.Add(1)
			}
		case <-tick.C:
			if l.out.Buffered() > 0 {
				_ = l.out.Flush()
			}
		}
	}
}

// write writes r as one JSON line: built by appendEntry, or by
// encoding/json when the line holds what appendEntry leaves to it, or,
// with masks, through a generic document the masks edit.
func (l *Logger) write(r Record) error {
	d := r.Decision
	e := Entry{
		DecisionID: d.ID,
		Timestamp:  r.At.UTC(),
		RequestID:  r.RequestID,
		Key:        r.KeyName,
		Action:     r.Request.Action,
		TokenHash:  Hash(r.Request.Token),
		Datapoints: Datapoints{Status: d.Status, Source: d.Origin},
		Decision:   d.Decision,
		Reasons:    d.Reasons,
		Policy:     Policy{Revision: d.Revision},
		Degraded:   d.Degraded,
		ElapsedMS:  float64(r.Elapsed.Microseconds()) / 1000,
	}
	if l.ids == nil {
		l.ids = make(map[string]string, len(r.Request.ExternalIDs))
	}
	clear(l.ids)
	for k, v := range r.Request.ExternalIDs {
		l.ids[k] = Hash(v)
	}
	e.ExternalIDs = l.ids
	if l.cfg.Shadow != nil {
		if sd, ok := l.cfg.Shadow(r.Request, d); ok {
			e.Shadow = &Shadow{Decision: sd.Decision, Reasons: sd.Reasons, Policy: Policy{Revision: sd.Revision}}
		}
	}
	if d.FingerprintID != "" {
		l.fp = d.FingerprintID
		e.FingerprintID = &l.fp
	}
	if d.Payload != nil {
		l.age = int(d.DatapointsAge / time.Second)
		e.Datapoints.AgeSeconds = &l.age
		if l.cfg.IncludeDatapoints {
			e.Datapoints.Payload = d.Payload.Raw()
		}
	}
	if len(l.masks) == 0 {
		line, ok := appendEntry(l.line[:0], &e)
		if !ok {
			return l.enc.Encode(e) // one Write of the whole line, newline included
		}
		l.line = line
		_, err := l.out.Write(line)
		return err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	for i, p := range l.masks {
		mask(doc, p.DecodedTokens(), l.cfg.Masks[i].Hash)
	}
	return l.enc.Encode(doc)
}

// mask removes (or hashes) the value at path in doc, if there is one.
func mask(doc any, path []string, hash bool) {
	for i, tok := range path {
		last := i == len(path)-1
		switch node := doc.(type) {
		case map[string]any:
			v, ok := node[tok]
			if !ok {
				return
			}
			if !last {
				doc = v
				continue
			}
			if hash {
				node[tok] = hashValue(v)
			} else {
				delete(node, tok)
			}
		case []any:
			idx, err := strconv.Atoi(tok)
			if err != nil || idx < 0 || idx >= len(node) || strconv.Itoa(idx) != tok {
				return
			}
			if !last {
				doc = node[idx]
				continue
			}
			if hash {
				node[idx] = hashValue(node[idx])
			} else {
				node[idx] = nil // removing would shift the indexes of the rest
			}
		default:
			return
		}
	}
}

func hashValue(v any) string {
	if s, ok := v.(string); ok {
		return Hash(s)
	}
	b, _ := json.Marshal(v)
	return Hash(string(b))
}
