package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/verdict-engine/verdict/api"
	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/engine/decisionlog"
	"github.com/verdict-engine/verdict/policies"
)

// Server timeouts. Decisions take milliseconds; these bound slow clients.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 15 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 15 * time.Second
	maxHeaderBytes    = 64 << 10
)

// defaultGCHeapFloor is --gc-heap-floor's default (see heapFloor): a
// quarter of the cache's default bound, memory a deployment sized for the
// cache already has.
const defaultGCHeapFloor = 64 << 20

// serveConfig is everything `verdict serve` is configured with.
type serveConfig struct {
	addr            listenAddr
	policies        string
	shadowPolicies  string
	csideURL        baseURL
	clientPath      urlPath
	clientIDPath    urlPath
	csideHeader     header
	cacheMaxBytes   byteSize
	hotPayloads     count
	gcHeapFloor     optionalSize
	gcSweepPoll     pollInterval
	cacheTTL        positiveDuration
	notFoundTTL     positiveDuration
	staleGrace      nonNegativeDuration
	upstreamTimeout positiveDuration
	breaker         breakerFlags
	demo            bool
	logLevel        logLevel
	accessLog       bool
	pprof           bool
	decisionLog     decisionLogFlags
	apiKeys         keySource
	adminKeys       keySource
	adminAddr       string
	insecureNoAuth  bool
	rateLimit       float64
	rateBurst       count
	tlsCert         string
	tlsKey          string
	evalTimeout     positiveDuration
	staging         bool
	decisionMemo    bool
}

// decisionLogFlags configure the decision log.
type decisionLogFlags struct {
	file       string
	stdout     bool
	datapoints bool
	masks      string
	buffer     count
	maxSizeMB  count
	maxBackups count
}

// breakerFlags configure the cside circuit breaker.
type breakerFlags struct {
	window              positiveDuration
	openFor             positiveDuration
	halfOpenProbes      count
	consecutiveFailures count
	failureRatio        ratio
	minRequests         count
}

func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (serveConfig, error) {
	cfg := serveConfig{
		addr:            ":8080",
		csideURL:        csideclient.DefaultBaseURL,
		clientPath:      csideclient.DefaultClientPath,
		clientIDPath:    csideclient.DefaultClientIDPath,
		cacheMaxBytes:   cache.DefaultMaxCostBytes,
		gcHeapFloor:     defaultGCHeapFloor,
		gcSweepPoll:     pollInterval(defaultSweepPoll),
		cacheTTL:        positiveDuration(cache.DefaultTTL),
		notFoundTTL:     positiveDuration(cache.DefaultNotFoundTTL),
		staleGrace:      nonNegativeDuration(cache.DefaultStaleGrace),
		upstreamTimeout: positiveDuration(csideclient.DefaultTimeout),
		breaker: breakerFlags{
			window:              positiveDuration(10 * time.Second),
			openFor:             positiveDuration(5 * time.Second),
			halfOpenProbes:      3,
			consecutiveFailures: 5,
			failureRatio:        0.5,
			minRequests:         10,
		},
		accessLog:   true,
		adminAddr:   "127.0.0.1:9090",
		evalTimeout: positiveDuration(engine.DefaultEvalTimeout),
		rateBurst:   100,
		decisionLog: decisionLogFlags{
			buffer: decisionlog.DefaultBuffer, maxSizeMB: decisionlog.DefaultMaxSizeMB, maxBackups: decisionlog.DefaultMaxBackups,
		},
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&cfg.addr, "addr", "listen address")
	fs.StringVar(&cfg.policies, "policies", "", "policy directory, watched and hot-reloaded (default: the policies embedded in the binary)")
	fs.StringVar(&cfg.shadowPolicies, "shadow-policies", "", "a second policy directory evaluated in shadow on every decision, watched and hot-reloaded")
	fs.Var(&cfg.csideURL, "cside-url", "cside API base URL")
	fs.Var(&cfg.clientPath, "cside-client-path", "cside datapoints endpoint path")
	fs.Var(&cfg.clientIDPath, "cside-clientid-path", "cside fingerprint ID endpoint path")
	fs.Var(&cfg.csideHeader, "cside-header", `header sent to cside, "Name: value" (prefer the environment twin: it is a secret)`)
	fs.Var(&cfg.cacheMaxBytes, "cache-max-bytes", "datapoint cache memory bound")
	fs.Var(&cfg.hotPayloads, "cache-hot-payloads", "bound on the tokens served from the cache that keep their parsed and staged state while cached (default: --cache-max-bytes / 2KiB)")
	fs.Var(&cfg.gcHeapFloor, "gc-heap-floor", "heap size below which the garbage collector does not run; above it, GOGC applies (0: off; ignored when GOGC is set)")
	fs.Var(&cfg.gcSweepPoll, "gc-sweep-poll", "with GOMAXPROCS=1, how often the network is polled while the garbage collector's background sweeper runs, which otherwise holds back requests until it ends (0: off)")
	fs.Var(&cfg.cacheTTL, "cache-ttl", "how long datapoints stay cached")
	fs.Var(&cfg.notFoundTTL, "cache-notfound-ttl", `how long a cside "not found" stays cached`)
	fs.Var(&cfg.staleGrace, "cache-stale-grace", "how long datapoints past their TTL are kept to be served stale when cside is unavailable (0: never)")
	fs.Var(&cfg.upstreamTimeout, "upstream-timeout", "cside budget of one decision, retry included")
	fs.Var(&cfg.breaker.window, "breaker-window", "window over which the breaker counts failures")
	fs.Var(&cfg.breaker.openFor, "breaker-open-for", "how long the breaker stays open before probing")
	fs.Var(&cfg.breaker.halfOpenProbes, "breaker-half-open-probes", "requests let through while half-open")
	fs.Var(&cfg.breaker.consecutiveFailures, "breaker-consecutive-failures", "consecutive failures that open the breaker")
	fs.Var(&cfg.breaker.failureRatio, "breaker-failure-ratio", "failure ratio in the window that opens the breaker")
	fs.Var(&cfg.breaker.minRequests, "breaker-min-requests", "requests in the window before the failure ratio applies")
	fs.BoolVar(&cfg.demo, "demo", false, "start a fake cside on a loopback port serving the demo-* tokens and use it")
	fs.Var(&cfg.logLevel, "log-level", "log level: debug, info, warn or error")
	fs.StringVar(&cfg.apiKeys.file, "api-keys-file", "", `API keys /decide and /identify accept, one "name:key" per line (also VERDICT_API_KEYS; re-read on SIGHUP)`)
	fs.StringVar(&cfg.adminAddr, "admin-addr", cfg.adminAddr, `listen address of the admin routes (/admin/*, /metrics); "off" disables them`)
	fs.StringVar(&cfg.adminKeys.file, "admin-keys-file", "", `admin keys, one "name:key" per line (also VERDICT_ADMIN_KEYS; re-read on SIGHUP)`)
	fs.BoolVar(&cfg.pprof, "pprof", false, "serve Go runtime profiles at /debug/pprof/ on the admin listener")
	fs.BoolVar(&cfg.insecureNoAuth, "insecure-no-auth", false, "serve without API keys (never in production; --demo implies it when no keys are given)")
	fs.Float64Var(&cfg.rateLimit, "rate-limit", 0, "requests per second each API key may make on average (0: no limit)")
	fs.Var(&cfg.rateBurst, "rate-burst", "requests an API key may make at once above its rate")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "TLS certificate (PEM) for both listeners; re-read on SIGHUP")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "TLS private key (PEM) for --tls-cert")
	fs.BoolVar(&cfg.staging, "staging", true, "stage cached payloads: partially evaluate the policies against a token's datapoints once, then only what depends on the action (false: evaluate every decision in full)")
	fs.BoolVar(&cfg.decisionMemo, "decision-memo", false, "answer a repeat call on a staged token from memory when it gives the same values to what the residual reads (at most 64 answers per cached token)")
	fs.Var(&cfg.evalTimeout, "eval-timeout", "longest one policy evaluation may run; past it the request fails with 500 policy_error")
	fs.BoolVar(&cfg.accessLog, "access-log", true, "log one line per request (method, route, status, latency)")
	fs.StringVar(&cfg.decisionLog.file, "decision-log", "", "write every decision as a JSON line to this file (size-rotated)")
	fs.BoolVar(&cfg.decisionLog.stdout, "decision-log-stdout", false, "write every decision as a JSON line to stdout")
	fs.BoolVar(&cfg.decisionLog.datapoints, "decision-log-datapoints", false, "include the cside payload in decision lines (needed by verdict replay)")
	fs.StringVar(&cfg.decisionLog.masks, "decision-log-mask", "", "fields to drop from decision lines: JSON pointers, comma-separated, each =remove (default) or =hash")
	fs.Var(&cfg.decisionLog.buffer, "decision-log-buffer", "decisions queued for the decision log before new ones are dropped")
	fs.Var(&cfg.decisionLog.maxSizeMB, "decision-log-max-size-mb", "size at which the decision log file rotates")
	fs.Var(&cfg.decisionLog.maxBackups, "decision-log-max-backups", "rotated decision log files kept")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: verdict serve [flags]\n\nEvery flag has an environment twin: --cache-ttl is VERDICT_CACHE_TTL. Flags win.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: serve takes no arguments, got %q", errUsage, fs.Arg(0))
	}
	if err := applyEnv(fs, getenv); err != nil {
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	cliOrEnv := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { cliOrEnv[f.Name] = true })
	cfg.apiKeys.flag, cfg.apiKeys.env, cfg.apiKeys.value = "api-keys-file", "VERDICT_API_KEYS", getenv("VERDICT_API_KEYS")
	cfg.adminKeys.flag, cfg.adminKeys.env, cfg.adminKeys.value = "admin-keys-file", "VERDICT_ADMIN_KEYS", getenv("VERDICT_ADMIN_KEYS")
	if cfg.rateLimit < 0 || cfg.rateLimit > 1e9 {
		return cfg, fmt.Errorf("%w: -rate-limit %v: want requests per second, 0 for none", errUsage, cfg.rateLimit)
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return cfg, fmt.Errorf("%w: -tls-cert and -tls-key go together", errUsage)
	}
	if cfg.adminAddr != "off" {
		if _, _, err := net.SplitHostPort(cfg.adminAddr); err != nil {
			return cfg, fmt.Errorf("%w: -admin-addr %q: want host:port or off", errUsage, cfg.adminAddr)
		}
	} else if cfg.pprof {
		return cfg, fmt.Errorf("%w: -pprof serves on the admin listener, and -admin-addr is off", errUsage)
	}
	if _, err := decisionlog.ParseMasks(cfg.decisionLog.masks); err != nil {
		return cfg, fmt.Errorf("%w: -decision-log-mask: %w", errUsage, err)
	}
	if cfg.demo && cliOrEnv["cside-url"] {
		return cfg, fmt.Errorf("%w: -demo and -cside-url exclude each other: -demo serves its own fake cside", errUsage)
	}
	for _, d := range []struct{ flag, dir string }{{"policies", cfg.policies}, {"shadow-policies", cfg.shadowPolicies}} {
		if d.dir == "" {
			continue
		}
		if st, err := os.Stat(d.dir); err != nil || !st.IsDir() {
			return cfg, fmt.Errorf("%w: -%s %q: not a readable directory", errUsage, d.flag, d.dir)
		}
	}
	return cfg, nil
}

// staleGrace maps the flag (0: never serve stale) to cache.Config's
// convention (0: the default, negative: never).
func staleGrace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// logReload logs the outcome of a policy reload.
func logReload(log *slog.Logger, set, trigger string, r engine.ReloadResult) {
	if r.OK {
		log.Info("policies reloaded", "set", set, "trigger", trigger, "revision", r.Revision)
		return
	}
	log.Error("policy reload refused; the previous set keeps serving", "set", set, "trigger", trigger,
		"revision", r.Revision, "error", r.Err)
}

// watchPolicies reloads each policy set when its directory changes, until
// ctx ends.
func watchPolicies(ctx context.Context, log *slog.Logger, eng *engine.Engine, cfg serveConfig) error {
	logResult := func(set, trigger string, r engine.ReloadResult) { logReload(log, set, trigger, r) }
	onError := func(err error) { log.Warn("watching policies", "error", err) }
	if cfg.policies != "" {
		err := engine.Watch(ctx, cfg.policies, 0, func() { logResult("live", "file change", eng.Live().Reload(ctx)) }, onError)
		if err != nil {
			return err
		}
	}
	if cfg.shadowPolicies != "" {
		err := engine.Watch(ctx, cfg.shadowPolicies, 0, func() { logResult("shadow", "file change", eng.Shadow().Reload(ctx)) }, onError)
		if err != nil {
			return err
		}
	}
	return nil
}

// listenerKeys loads one listener's keys. Without keys, serve refuses to
// start unless --demo or --insecure-no-auth says otherwise, and warns.
func listenerKeys(log *slog.Logger, cfg serveConfig, src keySource, listener string) (*api.Keys, error) {
	keys, err := src.load()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if len(keys) > 0 {
		log.Info("API keys loaded", "listener", listener, "keys", len(keys))
		return api.NewKeys(keys), nil
	}
	if !cfg.demo && !cfg.insecureNoAuth {
		return nil, fmt.Errorf("%w: refusing to serve the %s listener without keys: set -%s or %s (or -insecure-no-auth)",
			errUsage, listener, src.flag, src.env)
	}
	log.Warn("AUTHENTICATION DISABLED: anyone who reaches this listener is served", "listener", listener)
	return nil, nil
}

func keysOf(a *api.AdminConfig) *api.Keys {
	if a == nil {
		return nil
	}
	return a.Keys
}

// reloadOnHUP reloads, on every SIGHUP until ctx ends, the policy sets, the
// key files and the TLS certificate. What fails to reload is logged and the
// previous version keeps serving.
func reloadOnHUP(ctx context.Context, log *slog.Logger, eng *engine.Engine, certs *certificates, cfg serveConfig, apiKeys, adminKeys *api.Keys) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		report := eng.Reload(ctx)
		logReload(log, "live", "SIGHUP", report.Live)
		if report.Shadow != nil {
			logReload(log, "shadow", "SIGHUP", *report.Shadow)
		}
		for _, k := range []struct {
			keys *api.Keys
			src  keySource
			name string
		}{{apiKeys, cfg.apiKeys, "public"}, {adminKeys, cfg.adminKeys, "admin"}} {
			if k.keys == nil {
				continue
			}
			switch keys, err := k.src.load(); {
			case err != nil:
				log.Error("keys not reloaded; the previous keys stay valid", "listener", k.name, "error", err)
			case len(keys) == 0:
				log.Error("keys not reloaded: none left; the previous keys stay valid", "listener", k.name)
			default:
				k.keys.Replace(keys)
				log.Info("API keys reloaded", "listener", k.name, "keys", len(keys))
			}
		}
		if certs != nil {
			if err := certs.reload(); err != nil {
				log.Error("TLS certificate not reloaded; the previous one keeps serving", "error", err)
			} else {
				log.Info("TLS certificate reloaded")
			}
		}
	}
}

// serve runs the decision service until ctx ends, then shuts down
// gracefully: in-flight requests finish, and serve returns nil.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logOut := newLogWriter(stderr)
	defer func() { _ = logOut.Close() }()
	log := slog.New(flushingHandler{api.LogHandler(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: cfg.logLevel.Level})), logOut})
	defer applyHeapFloor(log, uint64(cfg.gcHeapFloor), getenv).stop() // #nosec G115 -- a size flag: 0 or 1 MiB to 1 TiB
	sweepPoll := applySweepPoll(log, time.Duration(cfg.gcSweepPoll))
	defer sweepPoll.stop()

	if cfg.demo {
		fake := csidetest.NewServer()
		defer fake.Close()
		cfg.csideURL = baseURL(fake.URL)
		cfg.clientPath, cfg.clientIDPath = csidetest.ClientPath, csidetest.ClientIDPath
		log.Warn("demo mode: using an in-process fake cside; demo-* tokens only", "cside_url", fake.URL)
	}

	var metrics *api.Metrics // built below, once its sources exist; hooks run after that
	client, err := csideclient.New(csideclient.Config{
		BaseURL:      string(cfg.csideURL),
		ClientPath:   string(cfg.clientPath),
		ClientIDPath: string(cfg.clientIDPath),
		HeaderName:   cfg.csideHeader.name,
		HeaderValue:  cfg.csideHeader.value,
		Timeout:      time.Duration(cfg.upstreamTimeout),
		Breaker: csideclient.BreakerConfig{
			Window:              time.Duration(cfg.breaker.window),
			OpenFor:             time.Duration(cfg.breaker.openFor),
			HalfOpenProbes:      uint32(cfg.breaker.halfOpenProbes),
			ConsecutiveFailures: uint32(cfg.breaker.consecutiveFailures),
			FailureRatio:        float64(cfg.breaker.failureRatio),
			MinRequests:         uint32(cfg.breaker.minRequests),
			OnStateChange: func(from, to string) {
				log.Warn("cside circuit breaker changed state", "from", from, "to", to)
				metrics.BreakerTransition(to)
			},
		},
		OnAttempt: func(endpoint, outcome string, d time.Duration) { metrics.ObserveUpstream(endpoint, outcome, d) },
	})
	if err != nil {
		return fmt.Errorf("%w: cside settings: %w", errUsage, err)
	}
	defer client.Close()
	datapoints, err := cache.New(cache.Config{
		MaxCostBytes: int64(cfg.cacheMaxBytes),
		HotPayloads:  int(cfg.hotPayloads),
		TTL:          time.Duration(cfg.cacheTTL),
		NotFoundTTL:  time.Duration(cfg.notFoundTTL),
		StaleGrace:   staleGrace(time.Duration(cfg.staleGrace)),
	}, client)
	if err != nil {
		return fmt.Errorf("%w: cache settings: %w", errUsage, err)
	}
	defer datapoints.Close()

	// Golden cases of a policy set are verified against the fake cside,
	// before the set serves and on every reload.
	caseSource, closeCases, err := casePipeline()
	if err != nil {
		return err
	}
	defer closeCases()

	engCfg := engine.Config{
		Policies:     policies.FS(),
		Source:       datapoints,
		CaseSource:   caseSource,
		EvalTimeout:  time.Duration(cfg.evalTimeout),
		NoStaging:    !cfg.staging,
		DecisionMemo: cfg.decisionMemo,
		OnDisagreement: func(d engine.Disagreement) {
			log.Info("shadow policies disagree",
				"decision_id", d.DecisionID, "live", d.Live, "shadow", d.Shadow,
				"live_reasons", d.LiveReasons, "shadow_reasons", d.ShadowReasons,
				"live_revision", d.LiveRevision, "shadow_revision", d.ShadowRevision)
		},
	}
	policySource := "embedded"
	if cfg.policies != "" {
		engCfg.Policies, policySource = os.DirFS(cfg.policies), cfg.policies
	}
	if cfg.shadowPolicies != "" {
		engCfg.ShadowPolicies = os.DirFS(cfg.shadowPolicies)
		// With a decision log, its writer evaluates the shadow set (once),
		// so that each line carries the shadow decision too.
		engCfg.ShadowByCaller = cfg.decisionLog.file != "" || cfg.decisionLog.stdout
	}
	engCfg.OnReload = func(_ string, r engine.ReloadResult) { metrics.PolicyReload(r.OK) }
	eng, err := engine.New(ctx, engCfg)
	if err != nil {
		return policyErr(fmt.Errorf("loading policies from %s: %w", policySource, err))
	}
	defer eng.Close()
	if err := watchPolicies(ctx, log, eng, cfg); err != nil {
		return err
	}

	var decisions *decisionlog.Logger
	if cfg.decisionLog.file != "" || cfg.decisionLog.stdout {
		masks, _ := decisionlog.ParseMasks(cfg.decisionLog.masks) // validated with the flags
		dlCfg := decisionlog.Config{
			File: cfg.decisionLog.file, MaxSizeMB: int(cfg.decisionLog.maxSizeMB), MaxBackups: int(cfg.decisionLog.maxBackups),
			Buffer: int(cfg.decisionLog.buffer), IncludeDatapoints: cfg.decisionLog.datapoints, Masks: masks,
		}
		if cfg.decisionLog.stdout {
			dlCfg.Stdout = stdout
		}
		if cfg.shadowPolicies != "" {
			dlCfg.Shadow = eng.EvaluateShadow
		}
		if decisions, err = decisionlog.New(dlCfg); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		defer func() {
			if err := decisions.Close(); err != nil {
				log.Error("closing the decision log", "error", err)
			}
		}()
	}
	metrics = api.NewMetrics(api.MetricSources{
		CacheLookups: func() (uint64, uint64, uint64) {
			stale := datapoints.StaleServed()
			return datapoints.Hits(), datapoints.Misses() - min(stale, datapoints.Misses()), stale
		},
		CacheCostBytes:   datapoints.CostBytes,
		CacheEvictions:   datapoints.Evictions,
		CacheHotPayloads: datapoints.HotPayloads,
		Coalesced:        datapoints.Coalesced,
		BreakerState:     client.BreakerState,
		PolicyRevision:   eng.Revision,
		GCSweepPolls:     sweepPoll.Polls,
		DecisionLogDropped: func() uint64 {
			if decisions == nil {
				return 0
			}
			return decisions.Dropped()
		},
	}, nil)
	apiCfg := api.Config{Logger: log, BreakerState: client.BreakerState, Metrics: metrics, NoAccessLog: !cfg.accessLog,
		RateLimit: api.RateLimit{Rate: cfg.rateLimit, Burst: int(cfg.rateBurst)}}
	if decisions != nil {
		apiCfg.DecisionLog = decisions
	}
	if apiCfg.Keys, err = listenerKeys(log, cfg, cfg.apiKeys, "public"); err != nil {
		return err
	}
	var adminCfg *api.AdminConfig
	if cfg.adminAddr != "off" {
		adminCfg = &api.AdminConfig{Admin: eng, Metrics: metrics, Logger: log, Pprof: cfg.pprof}
		if adminCfg.Keys, err = listenerKeys(log, cfg, cfg.adminKeys, "admin"); err != nil {
			return err
		}
	}

	var certs *certificates
	if cfg.tlsCert != "" {
		if certs, err = loadCertificates(cfg.tlsCert, cfg.tlsKey); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
	}
	public, err := newListener("public", string(cfg.addr), api.New(apiCfg, eng), log)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", cfg.addr, err)
	}
	listeners := []*listener{public}
	if adminCfg != nil {
		admin, err := newListener("admin", cfg.adminAddr, api.NewAdmin(*adminCfg), log)
		if err != nil {
			_ = public.ln.Close()
			return fmt.Errorf("-admin-addr %s: %w", cfg.adminAddr, err)
		}
		listeners = append(listeners, admin)
		log.Info("admin listening", "addr", admin.addr, "auth", adminCfg.Keys != nil)
	}
	go reloadOnHUP(ctx, log, eng, certs, cfg, apiCfg.Keys, keysOf(adminCfg))
	log.Info("verdict listening",
		"addr", public.addr,
		"tls", certs != nil,
		"auth", apiCfg.Keys != nil,
		"version", buildVersion(),
		"policies", policySource,
		"revision", eng.Revision(),
		"shadow_policies", cfg.shadowPolicies,
		"cside_url", string(cfg.csideURL),
		"cside_header", cfg.csideHeader.String())
	if err := serveAll(ctx, log, certs, listeners...); err != nil {
		return err
	}
	log.Info("shut down cleanly")
	return nil
}
