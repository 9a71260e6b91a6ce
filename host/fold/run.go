package fold

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipstreamkv/slipstream/host/reconcile"
	"github.com/slipstreamkv/slipstream/host/watch"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Metadata keys the host keeps in every generation, committed with the
// cursor. They say what the generation is a fold of.
const (
	MetaFormat     = "slipstream.format"
	MetaBucket     = "slipstream.bucket"
	MetaStream     = "slipstream.stream"
	MetaCreated    = "slipstream.stream_created"
	MetaScope      = "slipstream.scope"
	MetaTransforms = "slipstream.transforms"
	MetaSyncedAt   = "slipstream.synced_at"
)

// errRestart ends a session so that the next one starts at once (a rebuild
// was decided).
var errRestart = errors.New("restart session")

// applyTimeout bounds one Apply; a plugin that hangs longer is treated as
// failed, and the batch is fetched again by the next session.
const applyTimeout = 2 * time.Minute

// Run drives the fold until ctx ends. On ctx end it commits the batch it
// holds, closes its stores and returns nil. Errors of a session (plugin
// death, NATS trouble, a failing transform) are retried with jittered
// backoff while the fold reports itself stalled; Run returns an error only
// when the fold's directory is unusable.
func (f *Fold) Run(ctx context.Context) error {
	if err := f.Open(); err != nil {
		return fmt.Errorf("fold %s: %w", f.cfg.Name, err)
	}
	defer f.closeAll()
	b := backoff{min: f.cfg.RetryMin, max: f.cfg.RetryMax}
	for {
		before := f.commits.Load()
		err := f.containedSession(ctx)
		if f.commits.Load() != before {
			b.reset() // it made progress: not a failure streak
		}
		if ctx.Err() != nil {
			f.setState(StateStopped, "")
			return nil
		}
		if errors.Is(err, errRestart) {
			continue
		}
		if err == nil {
			b.reset()
			continue
		}
		f.cfg.Metrics.failures.WithLabelValues(f.cfg.Name).Inc()
		f.setState(StateStalled, err.Error())
		if !f.pause(ctx, b.next()) {
			f.setState(StateStopped, "")
			return nil
		}
	}
}

// pause waits d between two sessions, or less when the published
// generation's plugin dies meanwhile: its readers are waiting for the next
// session to reopen it. It reports false when ctx ended.
func (f *Fold) pause(ctx context.Context, d time.Duration) bool {
	end := time.NewTimer(d)
	defer end.Stop()
	poll := time.NewTicker(livenessPoll)
	defer poll.Stop()
	// Only a death during the pause cuts it short: a generation that was
	// already dead is the one the last session failed to reopen, and it
	// waits its backoff like any other failure.
	f.mu.RLock()
	pub := f.pub
	f.mu.RUnlock()
	watching := pub != nil && !pub.h.Exited()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-end.C:
			return true
		case <-poll.C:
			if watching && pub.h.Exited() {
				return true
			}
		}
	}
}

// deadGeneration returns the published generation or tgt when its plugin
// has died, or nil.
func (f *Fold) deadGeneration(tgt *generation) *generation {
	f.mu.RLock()
	pub := f.pub
	f.mu.RUnlock()
	for _, g := range []*generation{pub, tgt} {
		if g != nil && g.h.Exited() {
			return g
		}
	}
	return nil
}

// Open reads the fold's directory (creating it when missing) and clears what
// a crash left behind, so that a directory the fold cannot use is an error
// before anything runs. Run opens the fold itself when Open was not called.
func (f *Fold) Open() error {
	if f.opened {
		return nil
	}
	l, err := scanDir(f.cfg.Dir) // its errors name the path
	if err != nil {
		return err
	}
	f.layout, f.opened = l, true
	return nil
}

func (f *Fold) closeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.mu.Lock()
	pub, shadow := f.pub, f.shadow
	f.pub, f.shadow, f.target = nil, nil, nil
	f.mu.Unlock()
	for _, g := range []*generation{shadow, pub} {
		if g != nil {
			if err := g.h.Shutdown(ctx); err != nil {
				f.log.Warn("closing store", "generation", g.n, "err", err)
			}
		}
	}
}

// openGen launches a plugin for generation n and opens its store.
func (f *Fold) openGen(ctx context.Context, n int) (*generation, error) {
	dir := filepath.Join(f.cfg.Dir, genName(n))
	h, err := f.cfg.Launch(ctx)
	if err != nil {
		return nil, err
	}
	st, err := h.Open(ctx, dir, f.cfg.StoreConfig)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(sctx)
		return nil, fmt.Errorf("open store in %s: %w", dir, err)
	}
	return &generation{n: n, dir: dir, h: h, cursor: st.Cursor, meta: st.Meta, loading: st.Loading}, nil
}

// alive returns g if its plugin still runs, or reopens the generation.
func (f *Fold) alive(ctx context.Context, g *generation, n int) (*generation, error) {
	if g != nil && !g.h.Exited() {
		return g, nil
	}
	if g != nil {
		f.log.Warn("store plugin died; restarting it", "generation", n)
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = g.h.Shutdown(sctx)
		cancel()
	}
	return f.openGen(ctx, n)
}

// prepare makes sure the published generation is open (for readers) and
// returns the generation the watch should feed.
func (f *Fold) prepare(ctx context.Context) (*generation, error) {
	if f.layout.published > 0 {
		f.mu.RLock()
		pub := f.pub
		f.mu.RUnlock()
		g, err := f.alive(ctx, pub, f.layout.published)
		if err != nil {
			return nil, err
		}
		if err := f.endLoad(ctx, g); err != nil {
			return nil, err
		}
		f.mu.Lock()
		f.pub = g
		f.mu.Unlock()
	}
	if f.layout.published == 0 && f.layout.shadow == 0 {
		f.layout.shadow = 1
	}
	var tgt *generation
	if f.layout.shadow > 0 {
		g, err := f.alive(ctx, f.shadow, f.layout.shadow)
		if err != nil {
			return nil, err
		}
		f.shadow, tgt = g, g
	} else {
		f.mu.RLock()
		tgt = f.pub
		f.mu.RUnlock()
	}
	f.mu.Lock()
	f.target = tgt
	f.mu.Unlock()
	return tgt, nil
}

// wantMeta is the metadata a generation of this fold must carry.
func (f *Fold) wantMeta(id watch.Identity) map[string][]byte {
	digest := ""
	if f.cfg.Transform != nil {
		digest = f.cfg.Transform.Digest()
	}
	return map[string][]byte{
		MetaFormat:     []byte("1"),
		MetaBucket:     []byte(f.cfg.Bucket),
		MetaStream:     []byte(id.Stream),
		MetaCreated:    []byte(id.Created.Format(time.RFC3339Nano)),
		MetaScope:      []byte(strings.Join(f.cfg.Filters, "\n")),
		MetaTransforms: []byte(digest),
	}
}

// metaChecks are the metadata a generation must share with the fold it is
// resumed as, with what a difference is called, in the order they are
// checked, and the rebuild metric's label for it.
var metaChecks = []struct{ key, what, label string }{
	{MetaFormat, "format", "config"},
	{MetaBucket, "bucket", "config"},
	{MetaStream, "stream", "identity"},
	{MetaCreated, "stream identity (bucket recreated)", "identity"},
	{MetaScope, "scope", "config"},
	{MetaTransforms, "transform chain", "config"},
}

// mismatch says why generation g cannot be resumed as a fold of want (the
// metric label and the reason), or returns "" when it can.
func mismatch(g *generation, want map[string][]byte) (label, why string) {
	if g.cursor == 0 && len(g.meta) == 0 {
		return "", "" // a fresh store
	}
	for _, c := range metaChecks {
		if string(g.meta[c.key]) != string(want[c.key]) {
			return c.label, fmt.Sprintf("%s changed (%q, was %q)", c.what, want[c.key], g.meta[c.key])
		}
	}
	return "", ""
}

// rebuildLabel names why an error calls for a rebuild, for the metric.
func rebuildLabel(err error) string {
	switch {
	case errors.Is(err, watch.ErrCursorExpired):
		return "expired"
	case errors.Is(err, watch.ErrCursorAhead), errors.Is(err, watch.ErrIdentityChanged):
		return "identity"
	case errors.Is(err, watch.ErrCursorInvalid):
		return "invalid"
	case errors.Is(err, errRebuildToReconcile):
		return "reconcile"
	}
	return "other"
}

func metaEqual(have, want map[string][]byte) bool {
	for k, v := range want {
		if string(have[k]) != string(v) {
			return false
		}
	}
	return true
}

// rebuild abandons tgt as a resume point: the next session re-lists into a
// fresh shadow generation while readers keep the published one.
func (f *Fold) rebuild(ctx context.Context, tgt *generation, label, why string) error {
	f.cfg.Metrics.rebuilds.WithLabelValues(f.cfg.Name, label).Inc()
	f.log.Warn("rebuilding fold", "generation", tgt.n, "reason", why)
	f.mu.Lock()
	isPub := tgt == f.pub
	f.synced = false
	f.mu.Unlock()
	next := max(f.layout.published, f.layout.shadow) + 1
	if !isPub {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := tgt.h.Shutdown(sctx)
		cancel()
		f.shadow = nil
		if err != nil {
			f.log.Warn("closing abandoned shadow", "err", err)
		}
		if err := os.RemoveAll(tgt.dir); err != nil {
			return err
		}
	}
	f.layout.shadow = next
	f.setState(StateRebuilding, why)
	return errRestart
}

// containedSession runs one session; a panic in it ends the session with a
// *PanicError instead of the process.
func (f *Fold) containedSession(ctx context.Context) (err error) {
	defer f.contain("session", &err)
	return f.session(ctx)
}

// session opens what it needs, checks that the target can be resumed, and
// follows the stream until an error or ctx's end.
func (f *Fold) session(ctx context.Context) error {
	tgt, err := f.prepare(ctx)
	if err != nil {
		return err
	}
	id, pos, err := watch.Describe(ctx, f.js, f.cfg.Bucket)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.last = pos.Last
	f.mu.Unlock()
	want := f.wantMeta(id)
	if label, why := mismatch(tgt, want); why != "" && !f.cfg.hooks.NoRebuild {
		return f.rebuild(ctx, tgt, label, why)
	}
	f.mu.RLock()
	cursor := tgt.cursor
	f.mu.RUnlock()
	w, err := watch.Start(ctx, f.js, watch.Config{
		Bucket: f.cfg.Bucket, Filters: f.cfg.Filters, Cursor: cursor,
		NamePrefix:     "slipstream_" + f.cfg.Name,
		NoExpiryChecks: f.cfg.hooks.NoRebuild,
		NoBookmarks:    f.cfg.hooks.NoBookmarks,
		StartGate:      f.startGate,
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
	f.mu.RLock()
	isPub := tgt == f.pub
	hasPub := f.pub != nil
	f.mu.RUnlock()
	if !isPub && cursor == 0 && !tgt.loading {
		f.beginLoad(ctx, tgt)
	}
	switch {
	case !isPub && hasPub:
		f.setState(StateRebuilding, "")
	default:
		f.setState(StateBootstrapping, "")
	}
	f.log.Info("watching", "generation", tgt.n, "cursor", cursor, "pending", w.InitialPending,
		"stream_first", pos.First, "stream_last", pos.Last)
	err = f.follow(ctx, tgt, w, cursor, want, f.mustReconcile(tgt, pos))
	if (expired(err) || errors.Is(err, errRebuildToReconcile)) && !f.cfg.hooks.NoRebuild {
		return f.rebuild(ctx, tgt, rebuildLabel(err), err.Error())
	}
	return err
}

// errRebuildToReconcile: a fold with transforms cannot be repaired key by
// key (the listing would need every value run through the chain), so its
// reconcile is a rebuild.
var errRebuildToReconcile = errors.New("reconcile needed; a fold with transforms is rebuilt instead")

// horizon is how long delete markers of this bucket stay replayable.
func (f *Fold) horizon(pos watch.Position) time.Duration {
	h := f.cfg.TombstoneHorizon
	if h == 0 {
		h = reconcile.DefaultHorizon
		if pos.MarkerTTL > 0 && pos.MarkerTTL < h {
			h = pos.MarkerTTL
		}
	}
	return h
}

// mustReconcile says whether tgt was away longer than the tombstone
// horizon: deletes it missed may have left no marker to replay.
func (f *Fold) mustReconcile(tgt *generation, pos watch.Position) bool {
	h := f.horizon(pos)
	f.mu.RLock()
	raw, cursor := tgt.meta[MetaSyncedAt], tgt.cursor
	f.mu.RUnlock()
	if h < 0 || cursor == 0 || len(raw) == 0 {
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, string(raw))
	if err != nil || time.Since(at) > h {
		f.log.Info("away longer than the tombstone horizon; reconciling before ready",
			"last_synced", string(raw), "horizon", h.String())
		return true
	}
	return false
}

func expired(err error) bool {
	return errors.Is(err, watch.ErrCursorExpired) || errors.Is(err, watch.ErrCursorAhead) ||
		errors.Is(err, watch.ErrCursorInvalid) || errors.Is(err, watch.ErrIdentityChanged)
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
		f.mu.Lock()
		g.cursor = b.cursor
		f.mu.Unlock()
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	start := time.Now()
	if err := g.h.Apply(actx, b.storeBatch()); err != nil {
		return applyError(g, b, err)
	}
	isPub := f.committed(g, b, start)
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
		if err := f.publish(ctx, g); err != nil {
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
	f.mu.Lock()
	defer f.mu.Unlock()
	g.cursor = b.cursor
	for k, v := range b.meta {
		if g.meta == nil {
			g.meta = map[string][]byte{}
		}
		g.meta[k] = v
	}
	if b.cursor > f.last {
		f.last = b.cursor
	}
	return g == f.pub
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

// publish swaps a caught-up shadow in for readers and drops the old
// generation.
func (f *Fold) publish(ctx context.Context, g *generation) error {
	if err := publish(f.cfg.Dir, g.n); err != nil {
		return fmt.Errorf("publish generation %d: %w", g.n, err)
	}
	f.mu.Lock()
	old := f.pub
	f.pub, f.target = g, g
	f.mu.Unlock()
	f.layout.published, f.layout.shadow, f.shadow = g.n, 0, nil
	f.log.Info("published generation", "generation", g.n, "cursor", g.cursor)
	if old != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := old.h.Shutdown(sctx); err != nil {
			f.log.Warn("closing old generation", "generation", old.n, "err", err)
		}
		if err := os.RemoveAll(old.dir); err != nil {
			f.log.Warn("removing old generation", "generation", old.n, "err", err)
		}
	}
	return nil
}

// backoff is jittered exponential backoff.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}
