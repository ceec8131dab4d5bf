package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/verdict-engine/verdict/engine"
)

// Admin manages the policy sets; *engine.Engine implements it. Its routes
// live under /admin/ (protected in a later step: bind them only where
// operators can reach).
type Admin interface {
	Live() *engine.Slot
	// Shadow returns nil without shadow policies.
	Shadow() *engine.Slot
	ShadowStats() (engine.ShadowStats, bool)
	Reload(ctx context.Context) engine.ReloadReport
}

type (
	policyStatus struct {
		Revision   string        `json:"revision"`
		LoadedAt   time.Time     `json:"loaded_at"`
		Files      []string      `json:"files"`
		LastReload *reloadStatus `json:"last_reload"`
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

func (s *server) adminRoutes(r *gin.Engine) {
	a := s.cfg.Admin
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
