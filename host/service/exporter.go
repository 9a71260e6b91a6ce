package service

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/objstore"
)

// Results of an export round, the values of the result label of
// slipstream_export_rounds_total.
const (
	roundPublished  = "published"  // this node published an artifact
	roundCurrent    = "current"    // the pointer already holds this fold's cursor (or later)
	roundLeased     = "leased"     // another node holds the round's lease
	roundNotReady   = "not_ready"  // the fold is not caught up: nothing exported
	roundSuperseded = "superseded" // another node published a later artifact meanwhile
	roundError      = "error"
)

// exportMetrics are the periodic exports' metrics.
type exportMetrics struct {
	rounds  *prometheus.CounterVec
	pointer *prometheus.GaugeVec
	pruned  *prometheus.CounterVec
}

func newExportMetrics(reg prometheus.Registerer) *exportMetrics {
	m := &exportMetrics{
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_export_rounds_total",
			Help: "Periodic export rounds of a fold, by result: published, current, leased, not_ready, superseded or error."},
			[]string{"fold", "result"}),
		pointer: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "slipstream_export_pointer_cursor",
			Help: "Cursor of the artifact the fold's export series names, as this node last read it, whoever published it."},
			[]string{"fold"}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipstream_export_pruned_total",
			Help: "Payloads of the fold's export series that this node removed."}, []string{"fold"}),
	}
	reg.MustRegister(m.rounds, m.pointer, m.pruned)
	return m
}

// exporter runs one fold's periodic export (config.Export): each round,
// the node that takes the series' lease publishes an artifact when its fold
// is ahead of the series' pointer, then prunes. The lease lasts one period,
// so one node per round does the work; the pointer's compare-and-swap keeps
// the series right whatever the lease does.
type exporter struct {
	s       *Service
	f       *fold.Fold
	loc     objstore.Location
	every   time.Duration
	grace   time.Duration
	repl    int
	holder  string
	metrics *exportMetrics
}

func (s *Service) newExporter(f *fold.Fold, e config.Export, metrics *exportMetrics) (*exporter, error) {
	loc, err := objstore.ParseURL(e.To)
	if err != nil {
		return nil, err
	}
	grace := time.Duration(e.PruneGrace)
	if s.opts.PruneGrace > 0 {
		grace = s.opts.PruneGrace
	}
	return &exporter{
		s: s, f: f, loc: loc, every: time.Duration(e.Every), grace: grace, repl: e.Replicas,
		holder: s.series.opts.Exporter + "/" + f.Name(), metrics: metrics,
	}, nil
}

// run does a round every period until ctx ends. The first comes at a
// random point of the first period, so that nodes started together spread
// their rounds.
func (e *exporter) run(ctx context.Context) {
	log := e.s.log.With("fold", e.f.Name(), "series", e.loc.String())
	t := time.NewTimer(rand.N(e.every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		result, err := e.round(ctx)
		if ctx.Err() != nil {
			return
		}
		e.metrics.rounds.WithLabelValues(e.f.Name(), result).Inc()
		switch {
		case err != nil:
			log.Warn("periodic export failed; the next round tries again", "result", result, "err", err, "next_in", e.every.String())
		default:
			log.Debug("export round", "result", result)
		}
		t.Reset(e.every)
	}
}

// round is one export round.
func (e *exporter) round(ctx context.Context) (string, error) {
	st := e.f.Status(ctx)
	if !st.Ready {
		return roundNotReady, nil
	}
	store, err := e.s.series.store(ctx, e.loc.Bucket, e.repl, true)
	if err != nil {
		return roundError, err
	}
	lease, held, err := store.TryLease(ctx, e.loc.Name, e.holder, e.every)
	if err != nil {
		return roundError, err
	}
	if !held {
		return roundLeased, nil
	}
	result, err := e.publish(ctx, store, st)
	if err != nil {
		// Another node may do better this round.
		if rerr := lease.Release(ctx); rerr != nil && !errors.Is(rerr, objstore.ErrLeaseLost) {
			e.s.log.Warn("releasing the export lease", "fold", e.f.Name(), "err", rerr)
		}
		return result, err
	}
	// The lease is kept to its end: the round is done for every node.
	removed, err := store.Prune(ctx, e.loc.Name, e.grace)
	e.metrics.pruned.WithLabelValues(e.f.Name()).Add(float64(len(removed)))
	if len(removed) > 0 {
		e.s.log.Info("pruned artifacts", "fold", e.f.Name(), "series", e.loc.String(), "removed", removed)
	}
	return result, err
}

// publish publishes the fold unless the pointer is already at its cursor
// or past it.
func (e *exporter) publish(ctx context.Context, store *objstore.Store, st fold.Status) (string, error) {
	p, err := store.Latest(ctx, e.loc.Name)
	switch {
	case errors.Is(err, objstore.ErrNoArtifact):
	case err != nil:
		return roundError, err
	default:
		e.metrics.pointer.WithLabelValues(e.f.Name()).Set(float64(p.Cursor))
		if covers(p, st) {
			return roundCurrent, nil
		}
	}
	p, err = e.s.publish(ctx, e.f, e.loc, e.repl)
	var sup *objstore.SupersededError
	switch {
	case errors.As(err, &sup):
		e.metrics.pointer.WithLabelValues(e.f.Name()).Set(float64(sup.Current.Cursor))
		return roundSuperseded, nil
	case err != nil:
		return roundError, err
	}
	e.metrics.pointer.WithLabelValues(e.f.Name()).Set(float64(p.Cursor))
	return roundPublished, nil
}

// covers reports whether the series' pointer p names an artifact at least
// as recent as the fold of status st: of the same stream at its cursor or
// later, or of a stream created later.
func covers(p objstore.Pointer, st fold.Status) bool {
	if p.Bucket != st.Bucket || st.StreamCreated.IsZero() {
		return false
	}
	if p.StreamCreated.Equal(st.StreamCreated) {
		return p.Cursor >= st.Cursor
	}
	return p.StreamCreated.After(st.StreamCreated)
}
