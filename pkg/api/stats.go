package api

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// statsJSON is BHR's api/stats.
type statsJSON struct {
	BlockPending   int64            `json:"block_pending"`
	UnblockPending int64            `json:"unblock_pending"`
	Current        int64            `json:"current"`
	Expected       int64            `json:"expected"`
	Sources        map[string]int64 `json:"sources"`
}

// GET api/stats
func (a *API) getStats(c *gin.Context) {
	st, err := a.svc.Stats(c.Request.Context())
	if err != nil {
		a.writeError(c, err)
		return
	}
	if st.Sources == nil {
		st.Sources = map[string]int64{}
	}
	writeJSON(c, http.StatusOK, statsJSON{
		BlockPending:   st.BlockPending,
		UnblockPending: st.UnblockPending,
		Current:        st.Current,
		Expected:       st.Expected,
		Sources:        st.Sources,
	})
}

// GET api/source_stats: expected blocks by source.
func (a *API) getSourceStats(c *gin.Context) {
	st, err := a.svc.Stats(c.Request.Context())
	if err != nil {
		a.writeError(c, err)
		return
	}
	if st.Sources == nil {
		st.Sources = map[string]int64{}
	}
	writeJSON(c, http.StatusOK, st.Sources)
}

// GET api/metrics: BHR's Prometheus gauges, under BHR's names. Unlike
// BHR, samples carry no timestamp (so Prometheus's staleness handling
// works) and label values are escaped.
func (a *API) getMetrics(c *gin.Context) {
	st, err := a.svc.Stats(c.Request.Context())
	if err != nil {
		a.writeError(c, err)
		return
	}
	var b strings.Builder
	b.WriteString("# HELP bhr_blocked_total total hosts blocked\n# TYPE bhr_blocked_total gauge\n")
	fmt.Fprintf(&b, "bhr_blocked_total{type=\"current\"} %d\n", st.Current)
	fmt.Fprintf(&b, "bhr_blocked_total{type=\"expected\"} %d\n", st.Expected)
	b.WriteString("# HELP bhr_pending_total total hosts pending\n# TYPE bhr_pending_total gauge\n")
	fmt.Fprintf(&b, "bhr_pending_total{type=\"block\"} %d\n", st.BlockPending)
	fmt.Fprintf(&b, "bhr_pending_total{type=\"unblock\"} %d\n", st.UnblockPending)
	b.WriteString("# HELP bhr_blocked_total_by_source total hosts blocked by each source\n# TYPE bhr_blocked_total_by_source gauge\n")
	for _, src := range slices.Sorted(maps.Keys(st.Sources)) {
		fmt.Fprintf(&b, "bhr_blocked_total_by_source{source=\"%s\"} %d\n", labelEscaper.Replace(strings.ToValidUTF8(src, "\uFFFD")), st.Sources[src])
	}
	c.Header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	c.Status(http.StatusOK)
	_, _ = c.Writer.WriteString(b.String())
}

// labelEscaper escapes a Prometheus label value.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
