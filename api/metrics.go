package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/verdict-engine/verdict/engine"
)

// DefaultMetricActions are the action types that get their own label value
// in verdict_decisions_total; others count as "other", so that callers
// cannot grow the label set without bound.
var DefaultMetricActions = []string{"login", "signup", "checkout", "password_reset", "payout", "browse", "search"}

// latencyBuckets reach down to 100 µs: a cached decision takes ~0.1 ms.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// MetricSources are read when Prometheus scrapes. Every field is optional.
type MetricSources struct {
	// CacheLookups returns fresh hits, misses that went upstream, and
	// lookups answered with stale datapoints.
	CacheLookups func() (hit, miss, stale uint64)
	// CacheCostBytes returns the cost (bytes) the cache holds.
	CacheCostBytes func() uint64
	// CacheEvictions returns how many entries the cache evicted.
	CacheEvictions func() uint64
	// CacheHotPayloads returns how many tokens the cache keeps the engine's
	// state (parsed, staged) for.
	CacheHotPayloads func() int
	// Coalesced returns lookups that shared another caller's upstream call.
	Coalesced func() uint64
	// BreakerState returns "closed", "half-open" or "open".
	BreakerState func() string
	// PolicyRevision returns the serving policy revision.
	PolicyRevision func() string
	// DecisionLogDropped returns decision log lines dropped.
	DecisionLogDropped func() uint64
	// GCSweepPolls returns how many times the process polled the network
	// while the garbage collector's background sweeper ran.
	GCSweepPolls func() uint64
}

// Metrics are Verdict's Prometheus metrics, on a registry of their own with
// the Go and process collectors. Build one with NewMetrics; it is safe for
// concurrent use.
type Metrics struct {
	reg                *prometheus.Registry
	actions            []string
	decisions          *prometheus.CounterVec
	decideDuration     *prometheus.HistogramVec
	policyEval         *prometheus.HistogramVec
	upstreamRequests   *prometheus.CounterVec
	upstreamDuration   *prometheus.HistogramVec
	breakerTransitions *prometheus.CounterVec
	policyReloads      *prometheus.CounterVec
}

// NewMetrics registers every metric; actions are the action types with a
// label value of their own (nil: DefaultMetricActions).
func NewMetrics(src MetricSources, actions []string) *Metrics {
	if actions == nil {
		actions = DefaultMetricActions
	}
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		actions: actions,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verdict_decisions_total", Help: "Decisions made, by decision and action type (unlisted types: other).",
		}, []string{"decision", "action"}),
		decideDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "verdict_decide_duration_seconds", Help: "Time to answer POST /decide, by where the datapoints came from.",
			Buckets: latencyBuckets,
		}, []string{"source"}),
		policyEval: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "verdict_policy_eval_duration_seconds", Help: "Time to evaluate the policy set for one decision, by how it was evaluated: full, residual (staged) or constant (staged, nothing to evaluate).",
			Buckets: latencyBuckets,
		}, []string{"stage"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verdict_upstream_requests_total", Help: "Requests to cside (attempts, retries included), by endpoint and outcome.",
		}, []string{"endpoint", "outcome"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "verdict_upstream_duration_seconds", Help: "Duration of requests to cside, by endpoint.",
			Buckets: latencyBuckets,
		}, []string{"endpoint"}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verdict_breaker_transitions_total", Help: "Circuit breaker state changes, by the state entered.",
		}, []string{"to"}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verdict_policy_reloads_total", Help: "Policy reloads, by result (ok, refused).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.decisions, m.decideDuration, m.policyEval, m.upstreamRequests, m.upstreamDuration,
		m.breakerTransitions, m.policyReloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, to := range []string{"closed", "half-open", "open"} {
		m.breakerTransitions.WithLabelValues(to) // present at 0 from the start
	}
	for _, r := range []string{"ok", "refused"} {
		m.policyReloads.WithLabelValues(r)
	}
	m.reg.MustRegister(&scraped{src: src})
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry the metrics live on (for tests).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveUpstream records one request to cside.
func (m *Metrics) ObserveUpstream(endpoint, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.upstreamRequests.WithLabelValues(endpoint, outcome).Inc()
	if outcome != "breaker_open" {
		m.upstreamDuration.WithLabelValues(endpoint).Observe(d.Seconds())
	}
}

// BreakerTransition records the breaker entering state to.
func (m *Metrics) BreakerTransition(to string) {
	if m != nil {
		m.breakerTransitions.WithLabelValues(to).Inc()
	}
}

// PolicyReload records a reload's result.
func (m *Metrics) PolicyReload(ok bool) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "refused"
	}
	m.policyReloads.WithLabelValues(result).Inc()
}

// observeDecision records one /decide answered in elapsed.
func (m *Metrics) observeDecision(d engine.Decision, actionType string, elapsed time.Duration) {
	if m == nil {
		return
	}
	if !slices.Contains(m.actions, actionType) {
		actionType = "other"
	}
	m.decisions.WithLabelValues(d.Decision, actionType).Inc()
	m.decideDuration.WithLabelValues(string(d.Origin)).Observe(elapsed.Seconds())
	m.policyEval.WithLabelValues(string(d.Stage)).Observe(d.EvalDuration.Seconds())
}

// scraped collects the metrics read from MetricSources at scrape time.
type scraped struct{ src MetricSources }

var (
	cacheLookupsDesc = prometheus.NewDesc("verdict_cache_lookups_total",
		"Datapoint cache lookups, by result: hit (fresh), miss (asked cside), stale (served stale data).", []string{"result"}, nil)
	cacheCostDesc = prometheus.NewDesc("verdict_cache_cost_bytes",
		"Bytes held by the datapoint cache (its cost accounting: keys, raw and parsed payloads).", nil, nil)
	cacheEvictionsDesc = prometheus.NewDesc("verdict_cache_evictions_total",
		"Entries evicted from the datapoint cache to stay within its size.", nil, nil)
	cacheHotDesc = prometheus.NewDesc("verdict_cache_hot_payloads",
		"Tokens served from the datapoint cache whose parsed and staged state it keeps (bounded by --cache-hot-payloads).", nil, nil)
	coalescedDesc = prometheus.NewDesc("verdict_upstream_coalesced_total",
		"Lookups that shared another caller's cside call instead of making their own.", nil, nil)
	breakerStateDesc = prometheus.NewDesc("verdict_breaker_state",
		"State of the cside circuit breaker: 0 closed, 1 half-open, 2 open.", nil, nil)
	policyInfoDesc = prometheus.NewDesc("verdict_policy_info",
		"The serving policy revision, as a label; the value is always 1.", []string{"revision"}, nil)
	logDroppedDesc = prometheus.NewDesc("verdict_decision_log_dropped_total",
		"Decision log lines dropped because the writer could not keep up.", nil, nil)
	sweepPollsDesc = prometheus.NewDesc("verdict_gc_sweep_polls_total",
		"Network polls made while the garbage collector's background sweeper ran (--gc-sweep-poll; one-CPU processes only).", nil, nil)
)

func (s *scraped) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheLookupsDesc, cacheCostDesc, cacheEvictionsDesc, cacheHotDesc, coalescedDesc, breakerStateDesc, policyInfoDesc, logDroppedDesc, sweepPollsDesc} {
		ch <- d
	}
}

func (s *scraped) Collect(ch chan<- prometheus.Metric) {
	if f := s.src.CacheLookups; f != nil {
		hit, miss, stale := f()
		ch <- prometheus.MustNewConstMetric(cacheLookupsDesc, prometheus.CounterValue, float64(hit), "hit")
		ch <- prometheus.MustNewConstMetric(cacheLookupsDesc, prometheus.CounterValue, float64(miss), "miss")
		ch <- prometheus.MustNewConstMetric(cacheLookupsDesc, prometheus.CounterValue, float64(stale), "stale")
	}
	counter := func(desc *prometheus.Desc, f func() uint64) {
		if f != nil {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(f()))
		}
	}
	counter(cacheEvictionsDesc, s.src.CacheEvictions)
	counter(coalescedDesc, s.src.Coalesced)
	counter(logDroppedDesc, s.src.DecisionLogDropped)
	counter(sweepPollsDesc, s.src.GCSweepPolls)
	if f := s.src.CacheCostBytes; f != nil {
		ch <- prometheus.MustNewConstMetric(cacheCostDesc, prometheus.GaugeValue, float64(f()))
	}
	if f := s.src.CacheHotPayloads; f != nil {
		ch <- prometheus.MustNewConstMetric(cacheHotDesc, prometheus.GaugeValue, float64(f()))
	}
	if f := s.src.BreakerState; f != nil {
		state := map[string]float64{"closed": 0, "half-open": 1, "open": 2}[f()]
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, state)
	}
	if f := s.src.PolicyRevision; f != nil {
		ch <- prometheus.MustNewConstMetric(policyInfoDesc, prometheus.GaugeValue, 1, f())
	}
}
