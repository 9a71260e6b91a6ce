package fold

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus series every fold reports, labelled by fold.
type Metrics struct {
	state     *prometheus.GaugeVec
	cursor    *prometheus.GaugeVec
	last      *prometheus.GaugeVec
	pending   *prometheus.GaugeVec
	applied   *prometheus.CounterVec
	batches   *prometheus.CounterVec
	applyTime *prometheus.HistogramVec
	rebuilds  *prometheus.CounterVec
	failures  *prometheus.CounterVec
	repaired  *prometheus.CounterVec

	cacheHits   *prometheus.CounterVec
	cacheMisses *prometheus.CounterVec
	cacheBytes  *prometheus.GaugeVec
	watchers    *prometheus.GaugeVec

	artifacts       *prometheus.CounterVec
	artifactRecords *prometheus.CounterVec
	artifactTime    *prometheus.HistogramVec
}

var allStates = []State{StateStarting, StateBootstrapping, StateSynced, StateRebuilding, StateReconciling, StateStalled, StateStopped}

// NewMetrics creates the series and registers them with reg (nil: not
// registered, for tests and tools).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "slipstream_fold_state",
			Help: "1 for the state the fold is in, 0 for the others."}, []string{"fold", "state"}),
		cursor: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "slipstream_fold_cursor",
			Help: "Stream sequence committed with the fold's data."}, []string{"fold"}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "slipstream_fold_stream_last_seq",
			Help: "Last sequence of the bucket's stream, as last seen."}, []string{"fold"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "slipstream_fold_pending",
			Help: "Messages in scope the consumer still has to deliver."}, []string{"fold"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_applied_total",
			Help: "Mutations committed to the store."}, []string{"fold"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_batches_total",
			Help: "Batches committed to the store."}, []string{"fold"}),
		applyTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "slipstream_fold_apply_seconds",
			Help: "Time from sending a batch to the store plugin to its commit (batches sent on the apply pipe while catching up overlap).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)},
			[]string{"fold"}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_rebuilds_total",
			Help: "Rebuilds started, by reason."}, []string{"fold", "reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_failures_total",
			Help: "Fold sessions that ended in an error (plugin, NATS, transform)."}, []string{"fold"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_reconcile_repairs_total",
			Help: "Keys a reconcile deleted (stale) or fetched again (missing, changed)."}, []string{"fold", "kind"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_read_cache_hits_total",
			Help: "Key reads answered by the read cache."}, []string{"fold"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_read_cache_misses_total",
			Help: "Key reads the read cache sent to the store."}, []string{"fold"}),
		cacheBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "slipstream_fold_read_cache_bytes",
			Help: "Bytes the read cache holds (keys, values and overhead)."}, []string{"fold"}),
		watchers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "slipstream_fold_watchers",
			Help: "Change subscribers (GET .../watch) connected."}, []string{"fold"}),
		artifacts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_artifacts_total",
			Help: "Artifacts exported from or imported into the fold, by direction (export, import) and result (ok, error)."},
			[]string{"fold", "direction", "result"}),
		artifactRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_fold_artifact_records_total",
			Help: "Records of the artifacts exported or imported whole, by direction."}, []string{"fold", "direction"}),
		artifactTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "slipstream_fold_artifact_seconds",
			Help: "Time an export or import took, by direction.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)},
			[]string{"fold", "direction"}),
	}
	if reg != nil {
		reg.MustRegister(m.state, m.cursor, m.last, m.pending, m.applied, m.batches, m.applyTime, m.rebuilds, m.failures, m.repaired,
			m.cacheHits, m.cacheMisses, m.cacheBytes, m.watchers, m.artifacts, m.artifactRecords, m.artifactTime)
	}
	return m
}

func (m *Metrics) setState(fold string, s State) {
	for _, x := range allStates {
		v := 0.0
		if x == s {
			v = 1
		}
		m.state.WithLabelValues(fold, string(x)).Set(v)
	}
}

// artifactDone records an export or import that began at start.
func (m *Metrics) artifactDone(fold, direction string, start time.Time, records uint64, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	} else {
		m.artifactRecords.WithLabelValues(fold, direction).Add(float64(records))
	}
	m.artifacts.WithLabelValues(fold, direction, result).Inc()
	m.artifactTime.WithLabelValues(fold, direction).Observe(time.Since(start).Seconds())
}
