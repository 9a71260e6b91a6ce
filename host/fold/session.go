package fold

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slipstreamkv/slipstream/host/watch"
	"github.com/slipstreamkv/slipstream/internal/knobs"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/sdk"
)

// A session: one watch feeding one generation, from the resume decision
// through the pipeline (pipeline.go, applier.go) to each commit and the
// publish of a caught-up shadow.

// applyTimeout bounds one Apply; a plugin that hangs longer is treated as
// failed, and the batch is fetched again by the next session.
const applyTimeout = 2 * time.Minute

// session opens what it needs, decides what the target's stored state
// allows (decideResume), and follows the stream until an error or ctx's end.
func (f *Fold) session(ctx context.Context) error {
	tgt, err := f.gens.prepare(ctx, f.endLoad)
	if err != nil {
		return err
	}
	id, pos, err := watch.Describe(ctx, f.js, f.cfg.Bucket)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.last = pos.Last // a recreated stream starts again lower
	f.mu.Unlock()
	f.lastG.Set(float64(pos.Last))
	want := f.wantMeta(id)
	cursor, meta := tgt.committed()
	d := decideResume(cursor, meta, want, tombstoneHorizon(f.cfg.TombstoneHorizon, pos.MarkerTTL), time.Now())
	if d.rebuild && !f.cfg.hooks.NoRebuild {
		return f.rebuild(ctx, tgt, d.label, d.why)
	}
	if cursor == 0 && len(meta) == 0 && f.cfg.Bootstrap != nil && tgt.n != f.skipBootstrap {
		if err := f.bootstrap(ctx, tgt, want, pos); err != nil {
			return err
		}
		cursor, meta = tgt.committed()
		d = decideResume(cursor, meta, want, tombstoneHorizon(f.cfg.TombstoneHorizon, pos.MarkerTTL), time.Now())
	}
	wctx := knobs.WithWatch(ctx, knobs.Watch{NoExpiryChecks: f.cfg.hooks.NoRebuild, NoBookmarks: f.cfg.hooks.NoBookmarks})
	w, err := watch.Start(wctx, f.js, watch.Config{
		Bucket: f.cfg.Bucket, Filters: f.cfg.Filters, Cursor: cursor,
		NamePrefix: "slipstream_" + f.cfg.Name,
		StartGate:  f.startGate,
	})
	if err != nil {
		if expired(err) {
			return f.rebuild(ctx, tgt, rebuildLabel(err), err.Error())
		}
		return err
	}
	defer w.Stop()
	if !w.Identity.Created.Equal(id.Created) && !f.cfg.hooks.NoRebuild {
		return fmt.Errorf("bucket %s was recreated while the watch started", f.cfg.Bucket)
	}
	pub := f.gens.published()
	if tgt != pub && cursor == 0 && !tgt.loading {
		f.beginLoad(ctx, tgt)
	}
	if tgt != pub && pub != nil {
		f.setState(StateRebuilding, "")
	} else {
		f.setState(StateBootstrapping, "")
	}
	f.log.Info("watching", "generation", tgt.n, "cursor", cursor, "pending", w.InitialPending,
		"stream_first", pos.First, "stream_last", pos.Last)
	if d.reconcile {
		f.log.Info("away longer than the tombstone horizon; reconciling before ready", "reason", d.reconcileWhy)
	}
	err = f.follow(ctx, tgt, w, cursor, want, d.reconcile)
	if (expired(err) || errors.Is(err, errRebuildToReconcile)) && !f.cfg.hooks.NoRebuild {
		return f.rebuild(ctx, tgt, rebuildLabel(err), err.Error())
	}
	return err
}

// bootstrap tries once to fill the new generation g from the fold's
// artifact source. Only an import that was cut off after it committed
// something fails the session (g is then given up, and the next session
// re-lists into a fresh one); any other failure leaves g empty for the
// re-list.
func (f *Fold) bootstrap(ctx context.Context, g *generation, want map[string][]byte, pos watch.Position) error {
	f.skipBootstrap = g.n
	if f.gens.published() != nil {
		f.setState(StateRebuilding, "")
	} else {
		f.setState(StateBootstrapping, "")
	}
	f.log.Info("importing an artifact into a new generation", "generation", g.n, "source", f.cfg.BootstrapName)
	rc, err := f.cfg.Bootstrap(ctx)
	if err != nil {
		if errors.Is(err, ErrNoArtifact) {
			f.log.Info("no artifact to bootstrap from; re-listing the bucket", "source", f.cfg.BootstrapName)
		} else {
			f.log.Warn("cannot open the artifact to bootstrap from; re-listing the bucket", "source", f.cfg.BootstrapName, "err", err)
		}
		return ctx.Err()
	}
	defer rc.Close()
	_, wrote, err := f.importInto(ctx, g, rc, want, pos)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err() // the cut-off import is discarded on the next start
	}
	f.log.Warn("the artifact to bootstrap from is unusable; re-listing the bucket", "source", f.cfg.BootstrapName, "err", err)
	if !wrote {
		return nil
	}
	if err := f.gens.abandon(ctx, g); err != nil {
		return err
	}
	f.skipBootstrap = f.gens.layout.shadow
	return errRestart
}

// rebuild abandons tgt as a resume point: the next session re-lists into a
// fresh shadow generation while readers keep the published one.
func (f *Fold) rebuild(ctx context.Context, tgt *generation, label, why string) error {
	f.cfg.Metrics.rebuilds.WithLabelValues(f.cfg.Name, label).Inc()
	f.log.Warn("rebuilding fold", "generation", tgt.n, "reason", why)
	f.mu.Lock()
	f.synced = false
	f.mu.Unlock()
	if err := f.gens.abandon(ctx, tgt); err != nil {
		return err
	}
	f.setState(StateRebuilding, why)
	return errRestart
}

// commit applies one batch and, once it is durable, moves the cursor; a
// caught-up batch publishes a shadow generation.
func (f *Fold) commit(ctx context.Context, g *generation, b *batch) error {
	if b.caughtUp {
		if b.meta == nil {
			b.meta = map[string][]byte{}
		}
		b.meta[MetaSyncedAt] = []byte(time.Now().UTC().Format(time.RFC3339Nano))
	}
	if f.cfg.hooks.CursorBeforeApply {
		g.commit(b.cursor, nil)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	f.applyGate.RLock()
	start := time.Now()
	if err := g.h.Apply(actx, b.storeBatch()); err != nil {
		f.applyGate.RUnlock()
		return applyError(g, b, err)
	}
	isPub := f.committed(g, b, start)
	f.applyGate.RUnlock()
	if !b.caughtUp {
		return nil
	}
	if err := f.endLoad(ctx, g); err != nil {
		if ctx.Err() != nil {
			return nil // shutting down: not published; the load ends on the next start
		}
		return err
	}
	if !isPub {
		if err := f.gens.publish(ctx, g); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.synced, f.syncedAt = true, time.Now()
	f.mu.Unlock()
	f.setState(StateSynced, "")
	return nil
}

func (b *batch) storeBatch() *sdk.Batch {
	return &sdk.Batch{Mutations: b.muts, Cursor: b.cursor, Meta: b.meta}
}

func applyError(g *generation, b *batch, err error) error {
	return fmt.Errorf("store apply (generation %d, cursor %d): %w%s", g.n, b.cursor, err, pluginCause(g.h, err))
}

// pluginCause names why a plugin that stopped answering failed, when it
// said so before it died: a store that ends itself on a fatal error (Pebble
// on a full disk) tells its reason only to its log.
func pluginCause(h Handle, err error) string {
	if err != nil && !errors.Is(err, pluginhost.ErrPluginUnavailable) {
		return ""
	}
	p, ok := h.(interface{ LastError() string })
	if !ok {
		return ""
	}
	// A call cut off by the plugin's death returns before the process is
	// reaped and its last words read: give it a moment.
	for wait := 0; !h.Exited(); wait++ {
		if wait == 20 {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
	if why := p.LastError(); why != "" {
		return "; the plugin's last error: " + why
	}
	return ""
}

// committed records that the store committed b, whose Apply began at start:
// metrics, the generation's cursor and metadata. It reports whether g is
// the published generation.
func (f *Fold) committed(g *generation, b *batch, start time.Time) (isPub bool) {
	f.commits.Add(1)
	m := f.cfg.Metrics
	m.applyTime.WithLabelValues(f.cfg.Name).Observe(time.Since(start).Seconds())
	m.batches.WithLabelValues(f.cfg.Name).Inc()
	m.applied.WithLabelValues(f.cfg.Name).Add(float64(len(b.muts)))
	m.cursor.WithLabelValues(f.cfg.Name).Set(float64(b.cursor))
	f.liveCommitted(g, b)
	g.commit(b.cursor, b.meta)
	f.sawLast(b.cursor)
	return g == f.gens.published()
}

// beginLoad puts a new, empty generation's store in bulk-load mode when it
// has one (sdk.Loader) and the fold allows it. The load is only a faster
// way to fill the store: a store that refuses it is filled batch by batch.
func (f *Fold) beginLoad(ctx context.Context, g *generation) {
	l, ok := g.h.Loader()
	if !ok || f.cfg.NoBulkLoad {
		return
	}
	if err := l.BeginLoad(ctx); err != nil {
		f.log.Warn("store refused a bulk load; filling it batch by batch", "generation", g.n, "err", err)
		return
	}
	g.loading = true
}

// endLoad ends g's bulk load, if it is in one: a generation is published
// to readers only after its store has ended the load.
func (f *Fold) endLoad(ctx context.Context, g *generation) error {
	if !g.loading {
		return nil
	}
	l, ok := g.h.Loader()
	if !ok {
		return fmt.Errorf("generation %d is in a bulk load but its store has no EndLoad", g.n)
	}
	// No deadline: ending a load sorts or counts the whole fold, which
	// takes as long as the fold is large. A shutdown cancels it; the store
	// is then still loading and the load ends on the next start.
	start := time.Now()
	if err := l.EndLoad(ctx); err != nil {
		return fmt.Errorf("store end load (generation %d): %w", g.n, err)
	}
	g.loading = false
	f.log.Info("bulk load ended", "generation", g.n, "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}
