package app

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bhrd/bhrd/pkg/dnsbl"
	"github.com/bhrd/bhrd/pkg/queue"
)

// metrics are bhrd's Prometheus metrics, in a registry of the App's own
// so that several Apps (tests) never share counters.
type metrics struct {
	reg *prometheus.Registry

	applySeconds *prometheus.HistogramVec // ident, op
	applied      *prometheus.CounterVec   // ident, op
	applyErrors  *prometheus.CounterVec   // ident, op
	httpSeconds  *prometheus.HistogramVec // method, route, status
	storeErrors  prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		applySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bhrd_enforcer_apply_duration_seconds",
			Help: "Time to apply one batch to a backend and record it in the store, by enforcer ident and operation (block, unblock).",
			// A BGP batch takes about a millisecond, a netlink batch of
			// 200 routes a few; seconds mean trouble.
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"ident", "op"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bhrd_enforcer_applied_total",
			Help: "Queue items applied (blocks installed, entries removed), by enforcer ident and operation.",
		}, []string{"ident", "op"}),
		applyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bhrd_enforcer_errors_total",
			Help: "Failed enforcer attempts (retried with backoff), by ident and operation (reconcile, apply, next expiry).",
		}, []string{"ident", "op"}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bhrd_http_request_duration_seconds",
			Help:    "API request duration by method, route pattern and status (long polls included).",
			Buckets: []float64{.001, .005, .025, .1, .5, 2.5, 10, 60},
		}, []string{"method", "route", "status"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bhrd_store_errors_total",
			Help: "Store calls that failed for a reason other than the request itself (connection, disk, timeouts).",
		}),
	}
	m.reg.MustRegister(m.applySeconds, m.applied, m.applyErrors, m.httpSeconds, m.storeErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeRequest(method, route string, status int, d time.Duration) {
	m.httpSeconds.WithLabelValues(method, route, strconv.Itoa(status)).Observe(d.Seconds())
}

// scrapeCollector reads the state the metrics describe at scrape time
// (blocks by state, queues, BGP peers, installed prefixes), so that they
// cost nothing between scrapes; the store's part is held briefly (see
// storeScrapeHold).
type scrapeCollector struct {
	a    *App
	held *heldReads
}

var (
	descBlocks = prometheus.NewDesc("bhrd_blocks", "Blocks by state (BHR's api/stats: expected, current, block_pending, unblock_pending).",
		[]string{"state"}, nil)
	descQueueDepth = prometheus.NewDesc("bhrd_queue_depth",
		"Items waiting in an enforcer's queue (block or unblock), counted up to one page of 200.", []string{"ident", "queue"}, nil)
	descQueueAge = prometheus.NewDesc("bhrd_queue_oldest_age_seconds",
		"Age of the oldest waiting item of an enforcer's queue (since the block was added, or since the entry's unblock_at passed); 0 when empty.",
		[]string{"ident", "queue"}, nil)
	descIdentDepth = prometheus.NewDesc("bhrd_ident_queue_depth",
		"Work waiting for each ident in the store, this instance's or not: blocks queued (queue=block), entries past their end (queue=unblock).",
		[]string{"ident", "queue"}, nil)
	descIdentLag = prometheus.NewDesc("bhrd_ident_lag_seconds",
		"Age of each ident's oldest waiting work (0 when none), for every ident in the store: shows which planes, on any instance, are behind.",
		[]string{"ident", "queue"}, nil)
	descStandby    = prometheus.NewDesc("bhrd_enforcer_standby", "1 while another instance sharing the store owns the enforcer's ident.", []string{"ident", "type"}, nil)
	descReconciled = prometheus.NewDesc("bhrd_enforcer_reconciled", "1 once the enforcer rebuilt its backend from the store.", []string{"ident", "type"}, nil)
	descCapped     = prometheus.NewDesc("bhrd_enforcer_capped", "1 while max_prefixes holds blocks back.", []string{"ident", "type"}, nil)
	descInstalled  = prometheus.NewDesc("bhrd_enforcer_installed_prefixes",
		"Prefixes the enforcer enforces now (null routes installed for type nullroute, announcements for type bgp).", []string{"ident", "type"}, nil)
	descPeerUp = prometheus.NewDesc("bhrd_bgp_peer_up", "1 while the BGP session is established.",
		[]string{"ident", "peer", "peer_asn", "state"}, nil)
	descPeerSent     = prometheus.NewDesc("bhrd_bgp_prefixes_advertised", "Prefixes advertised to the peer.", []string{"ident", "peer"}, nil)
	descPeerReceived = prometheus.NewDesc("bhrd_bgp_prefixes_received",
		"Routes the peer sent bhrd (a router should send none; bhrd imports none).", []string{"ident", "peer"}, nil)
	descPeerRejected = prometheus.NewDesc("bhrd_bgp_prefixes_rejected",
		"Routes the peer sent that bhrd's reject-all import policy refused.", []string{"ident", "peer"}, nil)
	descDNSBLQueries = prometheus.NewDesc("bhrd_dnsbl_queries_total",
		"DNS queries a dnsbl enforcer answered, by zone, answer (listed, unlisted, test, apex, bad_key, refused, invalid) and access key holder.",
		[]string{"ident", "zone", "answer", "key"}, nil)
	descDNSBLListed = prometheus.NewDesc("bhrd_dnsbl_listed_prefixes", "Prefixes a dnsbl enforcer's zone lists now.", []string{"ident"}, nil)
	descScrapeErr   = prometheus.NewDesc("bhrd_scrape_errors", "1 when part of the state could not be read for this scrape.", []string{"part"}, nil)
)

func (c scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBlocks, descQueueDepth, descQueueAge, descIdentDepth, descIdentLag, descStandby, descReconciled, descCapped,
		descInstalled, descPeerUp, descPeerSent, descPeerReceived, descPeerRejected, descDNSBLQueries, descDNSBLListed, descScrapeErr} {
		ch <- d
	}
}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	failed := map[string]bool{}
	if st, err := a.svc.Stats(ctx); err == nil {
		gauge(descBlocks, float64(st.Expected), "expected")
		gauge(descBlocks, float64(st.Current), "current")
		gauge(descBlocks, float64(st.BlockPending), "block_pending")
		gauge(descBlocks, float64(st.UnblockPending), "unblock_pending")
	} else {
		failed["blocks"] = true
	}
	now := a.svc.Now()
	running := a.runningEnforcers()
	names := make([]string, len(running))
	for i, re := range running {
		names[i] = re.enf.Ident()
	}
	held := c.held.read(ctx, a.svc, names)
	defer c.held.mu.Unlock()
	age := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return max(now.Sub(t).Seconds(), 0)
	}
	for _, re := range running {
		ident := re.enf.Ident()
		typ := re.typ
		st := re.enf.Status()
		gauge(descReconciled, b2f(st.Reconciled), ident, typ)
		gauge(descStandby, b2f(st.Standby), ident, typ)
		gauge(descCapped, b2f(st.Capped), ident, typ)
		gauge(descInstalled, float64(st.Installed), ident, typ)
		if d, ok := re.inst.(dnsblStats); ok {
			gauge(descDNSBLListed, float64(d.Listed()), ident)
			for k, n := range d.QueryCounts() {
				ch <- prometheus.MustNewConstMetric(descDNSBLQueries, prometheus.CounterValue, float64(n), ident, k.Zone, k.Answer, k.Key)
			}
		}
		for _, q := range []struct {
			name string
			read queueRead
		}{{"block", held.block[ident]}, {"unblock", held.unblock[ident]}} {
			if !q.read.ok {
				failed["queues"] = true
				continue
			}
			gauge(descQueueDepth, float64(q.read.depth), ident, q.name)
			gauge(descQueueAge, age(q.read.oldest), ident, q.name)
		}
	}
	if held.identsOK {
		for _, in := range held.idents {
			gauge(descIdentDepth, float64(in.Queued), in.Name, "block")
			gauge(descIdentLag, age(in.OldestQueued), in.Name, "block")
			gauge(descIdentDepth, float64(in.UnblockDue), in.Name, "unblock")
			gauge(descIdentLag, age(in.OldestDue), in.Name, "unblock")
		}
	} else {
		failed["idents"] = true
	}
	if peers, err := a.BGPPeers(ctx); err == nil {
		for ident, ps := range peers {
			for _, p := range ps {
				gauge(descPeerUp, b2f(p.Up), ident, p.Address.String(), strconv.FormatUint(uint64(p.ASN), 10), p.State)
				gauge(descPeerSent, float64(p.PrefixesSent), ident, p.Address.String())
				gauge(descPeerReceived, float64(p.PrefixesReceived), ident, p.Address.String())
				gauge(descPeerRejected, float64(p.PrefixesRejected), ident, p.Address.String())
			}
		}
	} else {
		failed["peers"] = true
	}
	for _, part := range []string{"blocks", "queues", "idents", "peers"} {
		gauge(descScrapeErr, b2f(failed[part]), part)
	}
}

// storeScrapeHold is how long the store reads of one scrape (each
// enforcer's queue depth and oldest item, each ident's waiting work)
// serve the scrapes that follow: a scraper polling /metrics, which needs
// no login, costs the store at most one set of reads a second, and a
// scrape within the hold is answered from memory. The ages are computed
// at each scrape; the depths may be up to the hold old. The block counts
// have their own hold (queue.Service.Stats).
const storeScrapeHold = time.Second

// queueRead is one enforcer queue's depth (up to a page) and the time
// its oldest item started waiting.
type queueRead struct {
	depth  int
	oldest time.Time
	ok     bool
}

// heldReads are the store reads of the last scrape that made them.
type heldReads struct {
	mu             sync.Mutex
	at             time.Time
	block, unblock map[string]queueRead // by ident
	idents         []queue.IdentInfo
	identsOK       bool
}

// read returns the held reads, made again when they are older than
// storeScrapeHold or miss one of idents, with h.mu held: the caller
// unlocks it when done with them (scrapes at the same moment wait for
// one set of reads).
func (h *heldReads) read(ctx context.Context, svc *queue.Service, idents []string) *heldReads {
	h.mu.Lock()
	fresh := !h.at.IsZero() && time.Since(h.at) < storeScrapeHold
	for _, id := range idents {
		if _, ok := h.block[id]; !ok {
			fresh = false
		}
	}
	if fresh {
		return h
	}
	h.block = make(map[string]queueRead, len(idents))
	h.unblock = make(map[string]queueRead, len(idents))
	for _, ident := range idents {
		var b, u queueRead
		if bq, err := svc.BlockQueue(ctx, ident, time.Time{}, queue.QueueLimit); err == nil {
			b = queueRead{depth: len(bq), ok: true}
			if len(bq) > 0 {
				b.oldest = bq[0].Added
			}
		}
		// Read as the enforcer itself: its unblock queue is reserved.
		if uq, err := svc.UnblockQueue(queue.WithActor(ctx, queue.EnforcerActor(ident)), ident, queue.QueueLimit); err == nil {
			u = queueRead{depth: len(uq), ok: true}
			if len(uq) > 0 {
				u.oldest = uq[0].UnblockAt
			}
		}
		h.block[ident], h.unblock[ident] = b, u
	}
	var err error
	h.idents, err = svc.ListIdents(ctx)
	h.identsOK = err == nil
	h.at = time.Now()
	return h
}

// dnsblStats is a dnsbl enforcer's instance, for its metrics.
type dnsblStats interface {
	QueryCounts() map[dnsbl.CountKey]uint64
	Listed() int
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
