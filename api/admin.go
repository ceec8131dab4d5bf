package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/verdict-engine/verdict/engine"
)

// Admin manages the policy sets; *engine.Engine implements it.
type Admin interface {
	Live() *engine.Slot
	// Shadow returns nil without shadow policies.
	Shadow() *engine.Slot
	ShadowStats() (engine.ShadowStats, bool)
	Reload(ctx context.Context) engine.ReloadReport
}

type (
	policyStatus struct {
		Revision string    `json:"revision"`
		LoadedAt time.Time `json:"loaded_at"`
		Files    []string  `json:"files"`
		// FullEvaluation says whether full evaluation queries the reasons
		// optimized at load (engine.PolicySet.Optimized).
		FullEvaluation fullEvalStatus `json:"full_evaluation"`
		LastReload     *reloadStatus  `json:"last_reload"`
	}
	fullEvalStatus struct {
		Optimized bool   `json:"optimized"`
		Why       string `json:"why,omitempty"` // why not
	}
	reloadStatus struct {
		At       time.Time `json:"at"`
		OK       bool      `json:"ok"`
		Revision string    `json:"revision"`
		Error    *string   `json:"error"`
	}
	policiesResponse struct {
		policyStatus
		Shadow *policyStatus `json:"shadow,omitempty"`
	}
	reloadResponse struct {
		Error  *errorDetail  `json:"error,omitempty"`
		Live   reloadStatus  `json:"live"`
		Shadow *reloadStatus `json:"shadow,omitempty"`
	}
	shadowResponse struct {
		Revision string                       `json:"revision"`
		Total    uint64                       `json:"total"`
		Agreed   uint64                       `json:"agreed"`
		Errors   uint64                       `json:"errors"`
		Dropped  uint64                       `json:"dropped"`
		Matrix   map[string]map[string]uint64 `json:"matrix"`
	}
)

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Keys, if set, are the admin keys every admin route requires; nil
	// requires none.
	Keys *Keys
	// Admin serves /admin/policies, /admin/policies/reload, /admin/shadow.
	Admin Admin
	// Metrics, if set, is served at GET /metrics.
	Metrics *Metrics
	// Logger as in Config.
	Logger *slog.Logger
	// Pprof serves Go's runtime profiles under /debug/pprof/ (net/http/pprof)
	// when true. Off by default: a CPU profile costs CPU while it runs.
	Pprof bool
}

// NewAdmin returns the handler of the admin listener: /admin/* and
// /metrics, behind the admin keys. These routes are never on the public
// listener.
func NewAdmin(cfg AdminConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{log: cfg.Logger}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(requestID, s.accessLog, gin.CustomRecovery(s.recovered))
	if cfg.Keys != nil {
		r.Use(authenticate(cfg.Keys, "verdict-admin"))
	}
	if cfg.Admin != nil {
		adminRoutes(r, cfg.Admin)
	}
	if cfg.Metrics != nil {
		r.GET("/metrics", gin.WrapH(cfg.Metrics.Handler()))
	}
	if cfg.Pprof {
		r.GET("/debug/pprof/*profile", gin.WrapF(servePprof))
	}
	jsonFallbacks(r)
	return r
}

// servePprof dispatches /debug/pprof/<name> the way net/http/pprof's own
// mux does: the named handlers, any runtime profile by name, and the index.
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
}

func adminRoutes(r *gin.Engine, a Admin) {
	r.GET("/admin/policies", func(c *gin.Context) {
		resp := policiesResponse{policyStatus: slotStatus(a.Live())}
		if sh := a.Shadow(); sh != nil {
			st := slotStatus(sh)
			resp.Shadow = &st
		}
		c.JSON(http.StatusOK, resp)
	})
	r.POST("/admin/policies/reload", func(c *gin.Context) {
		report := a.Reload(c.Request.Context())
		resp := reloadResponse{Live: toReloadStatus(report.Live)}
		ok := report.Live.OK
		if report.Shadow != nil {
			st := toReloadStatus(*report.Shadow)
			resp.Shadow = &st
			ok = ok && report.Shadow.OK
		}
		if !ok {
			resp.Error = &errorDetail{Code: "policy_rejected", Message: "a policy set failed its checks or tests and was not loaded; the previous set keeps serving"}
			c.JSON(http.StatusUnprocessableEntity, resp)
			return
		}
		c.JSON(http.StatusOK, resp)
	})
	r.GET("/admin/shadow", func(c *gin.Context) {
		st, ok := a.ShadowStats()
		if !ok {
			writeError(c, &apiError{http.StatusNotFound, "no_shadow", "no shadow policies configured (serve --shadow-policies DIR)"})
			return
		}
		c.JSON(http.StatusOK, shadowResponse{st.Revision, st.Total, st.Agreed, st.Errors, st.Dropped, st.Matrix})
	})
}

func slotStatus(s *engine.Slot) policyStatus {
	set := s.Current()
	st := policyStatus{Revision: set.Revision(), LoadedAt: set.LoadedAt(), Files: set.Files()}
	st.FullEvaluation.Optimized, st.FullEvaluation.Why = set.Optimized()
	if last := s.LastReload(); last != nil {
		r := toReloadStatus(*last)
		st.LastReload = &r
	}
	return st
}

func toReloadStatus(r engine.ReloadResult) reloadStatus {
	st := reloadStatus{At: r.At, OK: r.OK, Revision: r.Revision}
	if r.Err != nil {
		msg := r.Err.Error()
		st.Error = &msg
	}
	return st
}
