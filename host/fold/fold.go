// Package fold keeps one local fold of a KV bucket: it drives a store plugin
// from a watch, commits the cursor with the data, rebuilds into a shadow
// generation when the cursor cannot be resumed, and serves reads from the
// published generation.
//
// It owns ARCHITECTURE.md invariants 1-4, 6 and 8: the store's cursor is the
// only authority; the cursor moves only after Apply succeeds; identity, scope
// and transform changes rebuild; readers never see a half-built generation.
// It never talks to a backend except through the sdk.Store contract.
package fold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/reconcile"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/sdk"
)

// ErrNotReady is returned by reads of a fold that has no published
// generation yet (its first bootstrap is still running).
var ErrNotReady = errors.New("fold has no complete generation yet")

// ErrStoreUnavailable is returned by reads while the published generation's
// store plugin is down; the fold is restarting it.
var ErrStoreUnavailable = errors.New("store unavailable")

// DefaultReadTimeout is Config.ReadTimeout's default.
const DefaultReadTimeout = 10 * time.Second

// errReadTimeout is the cause of a store read's context when the read
// timeout ended it.
var errReadTimeout = errors.New("read timeout")

func (f *Fold) readTimeout() time.Duration {
	if f.cfg.ReadTimeout > 0 {
		return f.cfg.ReadTimeout
	}
	return DefaultReadTimeout
}

// scanRead is scan(ctx, r, fn) for a reader that may read for long (an
// export): its length is not bounded, but it ends, with
// ErrStoreUnavailable saying so, when the store sends nothing for the read
// timeout while fn is not running. fn's own time (a slow client taking
// what fn writes) is not the store's.
func (f *Fold) scanRead(ctx context.Context, scan func(context.Context, sdk.Range, func(sdk.Entry) error) error,
	r sdk.Range, fn func(sdk.Entry) error) error {
	d := f.readTimeout()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var calls atomic.Uint64 // odd while fn runs
	stop := make(chan struct{})
	defer close(stop) // before cancel: the guard is gone when the scan's context ends
	go func() {
		tick := time.NewTicker(d / 4)
		defer tick.Stop()
		last, since := calls.Load(), time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				switch n := calls.Load(); {
				case n != last || n%2 == 1:
					last, since = n, now
				case now.Sub(since) >= d:
					cancel(errReadTimeout)
					return
				}
			}
		}
	}()
	err := scan(sctx, r, func(e sdk.Entry) error {
		calls.Add(1)
		defer calls.Add(1)
		return fn(e)
	})
	if err != nil && ctx.Err() == nil && context.Cause(sctx) == errReadTimeout {
		return fmt.Errorf("%w: the store plugin sent nothing for %v", ErrStoreUnavailable, d)
	}
	return err
}

// storeRead runs read, a call to the store for a reader, bounded by the
// read timeout. A read the timeout cut short fails with
// ErrStoreUnavailable, saying so; one that ctx ended, with ctx's error; one
// that failed otherwise, even at the deadline, with its own.
func (f *Fold) storeRead(ctx context.Context, read func(context.Context) error) error {
	d := f.readTimeout()
	rctx, cancel := context.WithTimeoutCause(ctx, d, errReadTimeout)
	defer cancel()
	err := read(rctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && context.Cause(rctx) == errReadTimeout {
		return fmt.Errorf("%w: the store plugin did not answer a read within %v", ErrStoreUnavailable, d)
	}
	return err
}

// Handle is an open store plugin process (a *pluginhost.Plugin), or a
// store in this process made one with InProcess.
type Handle interface {
	sdk.Store
	// Loader returns the store's bulk-load calls when it has them.
	Loader() (sdk.Loader, bool)
	// Snapshotter returns the store's consistent views when it has them.
	Snapshotter() (sdk.Snapshotter, bool)
	// Shutdown closes the store and ends the process.
	Shutdown(ctx context.Context) error
	// Exited reports whether the process has died. Readers and the
	// session call it concurrently with the other methods.
	Exited() bool
}

// InProcess makes a store in this process a Handle: there is no process to
// end or to die, and its capabilities are the interfaces it implements.
func InProcess(s sdk.Store) Handle { return inProcess{s} }

type inProcess struct{ sdk.Store }

func (h inProcess) Loader() (sdk.Loader, bool) {
	l, ok := h.Store.(sdk.Loader)
	return l, ok
}

func (h inProcess) Snapshotter() (sdk.Snapshotter, bool) {
	s, ok := h.Store.(sdk.Snapshotter)
	return s, ok
}

func (h inProcess) Shutdown(ctx context.Context) error {
	if err := h.Close(ctx); err != nil && !errors.Is(err, sdk.ErrClosed) {
		return err
	}
	return nil
}

func (inProcess) Exited() bool { return false }

// Launcher starts a store plugin process for a fold.
type Launcher func(ctx context.Context) (Handle, error)

// Forker is a Transform that can make another of itself for a second
// goroutine; Verify uses one of its own while the fold applies.
type Forker interface {
	Fork(ctx context.Context) (Transform, func(), error)
}

// Transform reshapes updates before they are folded. A Transform is used by
// one goroutine at a time: the fold's reader, and Verify through a fork (or,
// for a Transform that is no Forker, under the fold's lock on it).
type Transform interface {
	// Digest identifies the chain (modules and their config); a change of
	// digest rebuilds the fold.
	Digest() string
	// Apply returns the mutations to fold, in order: a subset of in, each
	// with its key and (for a put) its value possibly rewritten. It may
	// reuse in's backing array. An error stalls the fold: nothing of the
	// batch is applied and the cursor does not move.
	Apply(ctx context.Context, in []sdk.Mutation) ([]sdk.Mutation, error)
}

// Config describes one fold.
type Config struct {
	Name    string
	Bucket  string
	Filters []string
	// Dir holds the fold's generations.
	Dir string
	// StoreConfig is the store_config table as JSON.
	StoreConfig []byte
	Launch      Launcher
	Transform   Transform // nil: fold the bucket as is

	MaxEntries int
	MaxBytes   int
	Window     time.Duration
	// CheckEvery is the live floor guard's period; default 1s.
	CheckEvery time.Duration
	// TombstoneHorizon is how long delete markers stay replayable: a fold
	// that was last caught up longer ago than this reconciles before it
	// reports ready. 0 means reconcile.DefaultHorizon (or the bucket's
	// marker TTL when shorter); negative, never.
	TombstoneHorizon time.Duration
	// ReconcileEvery runs a reconcile periodically; 0 means never.
	ReconcileEvery time.Duration
	// Bootstrap, when set, is tried for a new generation (a first one, or
	// a rebuild's) before the bucket is re-listed into it: an artifact it
	// opens is imported, and only the stream's tail after the artifact's
	// cursor is then read. A missing, refused or damaged artifact is
	// logged, and the generation is re-listed. BootstrapName names the
	// source in logs.
	Bootstrap     Source
	BootstrapName string
	// NoBulkLoad keeps new generations out of the store's bulk-load mode
	// (sdk.Loader), which is used by default when the store has it.
	NoBulkLoad bool
	// ReadCache bounds the bytes of the read cache of the published
	// generation; 0 is DefaultReadCache, negative no cache.
	ReadCache int64
	// ChangeBuffer bounds the bytes of the recent changes held for change
	// subscribers to resume from; 0 is DefaultChangeBuffer, negative none
	// (subscribers then resume only from the newest position).
	ChangeBuffer int64
	// ReadTimeout bounds each call a reader makes to the store (a read the
	// cache does not answer, a Scan, the key count of Status), and the
	// silence of the store in an export's, a verify's or a reconcile's
	// scan: a plugin that hangs, its process alive and its answer never
	// coming, fails the read with ErrStoreUnavailable instead of holding
	// the reader (a reconcile's ends the session with that reason). 0 is
	// DefaultReadTimeout.
	ReadTimeout time.Duration
	// RetryMin and RetryMax bound the jittered backoff between failed
	// sessions; defaults 100ms and 30s. A session that committed something
	// before failing starts the backoff over.
	RetryMin, RetryMax time.Duration

	Logger  *slog.Logger
	Metrics *Metrics

	// hooks switch defences off, for tests that prove a defence matters;
	// only export_test.go sets them.
	hooks hooks
}

// hooks switch defences off. Never set outside tests.
type hooks struct {
	// NoRebuild resumes from whatever the server delivers instead of
	// rebuilding when the cursor has expired.
	NoRebuild bool
	// NoBookmarks keeps the cursor at the last revision in scope, so a quiet
	// filtered fold falls behind retention.
	NoBookmarks bool
	// NoReconcile skips the reconcile a fold owes after being away longer
	// than the tombstone horizon.
	NoReconcile bool
	// CursorBeforeApply is a deliberate bug: the fold's cursor moves when a
	// batch is sent, before the store has applied it. The cursor-authority
	// model test uses it to prove it catches such a bug.
	CursorBeforeApply bool
}

// State is where a fold is in its life.
type State string

// The states a fold reports, everywhere the same.
const (
	StateStarting      State = "starting"
	StateBootstrapping State = "bootstrapping"
	StateSynced        State = "synced"
	StateRebuilding    State = "rebuilding"
	StateReconciling   State = "reconciling"
	StateStalled       State = "stalled"
	StateStopped       State = "stopped"
)

// Status is a snapshot of a fold for the API, metrics and the CLI.
type Status struct {
	Name       string   `json:"name"`
	Bucket     string   `json:"bucket"`
	Scope      []string `json:"scope"`
	State      State    `json:"state"`
	Reason     string   `json:"reason,omitempty"`
	Ready      bool     `json:"ready"`
	Stale      bool     `json:"stale"`
	Generation int      `json:"generation"`
	Cursor     uint64   `json:"cursor"`
	StreamLast uint64   `json:"stream_last_seq"`
	Lag        uint64   `json:"lag"`
	Pending    uint64   `json:"pending"`
	Keys       uint64   `json:"keys"`
	Bytes      uint64   `json:"bytes"`
	// StoreError is why the store did not report Keys and Bytes (a plugin
	// that does not answer within the read timeout, one that exited): they
	// are 0 then, which alone would read as an empty fold.
	StoreError string    `json:"store_error,omitempty"`
	Store      string    `json:"store,omitempty"`
	SyncedAt   time.Time `json:"synced_at,omitzero"`
	// StreamCreated is the creation time of the stream the published
	// generation folds: with Bucket, its identity.
	StreamCreated time.Time `json:"stream_created,omitzero"`
	// NATS is the state of the fold's NATS connection: connected,
	// reconnecting, disconnected or closed.
	NATS string `json:"nats,omitempty"`
}

// Fold is one fold and its supervisor.
type Fold struct {
	cfg Config
	js  jetstream.JetStream
	log *slog.Logger

	gens *generations

	// mu guards the fold's state as it reports it.
	mu     sync.RWMutex
	state  State
	reason string
	synced bool
	// offlineWhy: the NATS connection is down, and why (watchConnection).
	offlineWhy string
	last       uint64 // stream last sequence, last seen
	syncedAt   time.Time

	// liveMu guards live, what readers of the published generation share
	// (live.go). Taken before the generations' locks, never after.
	liveMu sync.Mutex
	live   *live
	// The read cache's series, resolved once: reads are the hot path.
	hits, misses prometheus.Counter
	cacheBytes   prometheus.Gauge
	// pendingG and lastG are set per update and per check.
	pendingG, lastG prometheus.Gauge

	// lastQuickRestart is when (UnixNano) a consumer reset last restarted
	// a session at once (quickRestart).
	lastQuickRestart atomic.Int64
	// applyGate is read-held by every batch from its Apply (or its send on
	// the pipe) until its commit is recorded. An export of a store that has
	// no consistent views write-holds it: no batch is applied meanwhile.
	applyGate sync.RWMutex

	// transformMu serializes the reader and Verify on a Transform that
	// cannot fork.
	transformMu sync.Mutex

	// startGate lets one consumer creation of this fold's watches be
	// outstanding at a time (watch.Config.StartGate).
	startGate chan struct{}

	// skipBootstrap is the generation Config.Bootstrap is not tried for
	// again (it was, once). The session's goroutine only.
	skipBootstrap int

	pending      atomic.Uint64
	commits      atomic.Uint64 // batches committed, for the supervisor
	reconcileReq atomic.Bool
}

// setPending records the consumer's pending count: 0 once caught up.
func (f *Fold) setPending(n uint64) {
	f.pending.Store(n)
	f.pendingG.Set(float64(n))
}

// sawLast records a last sequence of the bucket's stream (0: unknown,
// ignored); the fold's last-seen value never goes back.
func (f *Fold) sawLast(last uint64) {
	f.mu.Lock()
	if last > f.last {
		f.last = last
	}
	last = f.last
	f.mu.Unlock()
	f.lastG.Set(float64(last))
}

// RequestReconcile asks the running fold to reconcile with its bucket as
// soon as it can (between two batches).
func (f *Fold) RequestReconcile() { f.reconcileReq.Store(true) }

// Defaults of the Config fields left zero. They are the config file's
// defaults too (host/config uses these), so they are written once.
const (
	DefaultMaxEntries = 1000
	DefaultMaxBytes   = 4 << 20
	DefaultWindow     = 10 * time.Millisecond
	DefaultCheckEvery = time.Second
	DefaultRetryMin   = 100 * time.Millisecond
	DefaultRetryMax   = 30 * time.Second
)

// New prepares a fold; Run drives it.
func New(cfg Config, js jetstream.JetStream) *Fold {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryMin)
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = DefaultCheckEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.ReadCache = orDefault(cfg.ReadCache, DefaultReadCache)
	cfg.ChangeBuffer = orDefault(cfg.ChangeBuffer, DefaultChangeBuffer)
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	log := cfg.Logger.With("fold", cfg.Name)
	f := &Fold{cfg: cfg, js: js, log: log, state: StateStarting, startGate: make(chan struct{}, 1),
		gens: &generations{dir: cfg.Dir, launch: cfg.Launch, storeConfig: cfg.StoreConfig, log: log}}
	f.gens.onPublish = f.refreshLive
	f.hits = cfg.Metrics.cacheHits.WithLabelValues(cfg.Name)
	f.misses = cfg.Metrics.cacheMisses.WithLabelValues(cfg.Name)
	f.cacheBytes = cfg.Metrics.cacheBytes.WithLabelValues(cfg.Name)
	f.pendingG = cfg.Metrics.pending.WithLabelValues(cfg.Name)
	f.lastG = cfg.Metrics.last.WithLabelValues(cfg.Name)
	return f
}

// orDefault is a byte bound as a Config field means it: 0 is def,
// negative is none (0).
func orDefault(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Name is the fold's name.
func (f *Fold) Name() string { return f.cfg.Name }

// Ready reports whether the fold serves a complete generation that has
// caught up with the stream.
func (f *Fold) Ready() bool {
	pub, tgt := f.gens.current()
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.readyLocked(pub, tgt)
}

// readyLocked: the generations read before f.mu was taken (a rebuild
// clears synced before it changes the target, and a publish sets it after).
func (f *Fold) readyLocked(pub, tgt *generation) bool {
	return pub != nil && tgt == pub && f.synced && f.state == StateSynced && f.offlineWhy == ""
}

// Status reports the fold's state. It asks the store for its key count.
func (f *Fold) Status(ctx context.Context) Status {
	pub, tgt := f.gens.current()
	f.mu.RLock()
	st := Status{
		Name: f.cfg.Name, Bucket: f.cfg.Bucket, Scope: f.cfg.Filters,
		Ready:   f.readyLocked(pub, tgt),
		Pending: f.pending.Load(), StreamLast: f.last, SyncedAt: f.syncedAt,
	}
	st.State, st.Reason = f.shownLocked()
	if pub != nil {
		st.Stale = tgt != pub || !f.synced
	}
	f.mu.RUnlock()
	if pub != nil {
		var meta map[string][]byte
		st.Generation = pub.n
		st.Cursor, meta = pub.committed()
		st.StreamCreated, _ = time.Parse(time.RFC3339Nano, string(meta[MetaCreated]))
	}
	if st.StreamLast > st.Cursor {
		st.Lag = st.StreamLast - st.Cursor
	}
	if f.js != nil && f.js.Conn() != nil {
		st.NATS = strings.ToLower(f.js.Conn().Status().String())
	}
	if pub != nil {
		var s sdk.Stats
		err := f.storeRead(ctx, func(ctx context.Context) (err error) {
			s, err = pub.h.Stats(ctx)
			return err
		})
		if err == nil {
			st.Keys, st.Bytes = s.Keys, s.Bytes
		} else if ctx.Err() != nil && !errors.Is(err, ErrStoreUnavailable) {
			// The caller's own bound ran out first (the API's is shorter
			// than the read timeout).
			st.StoreError = "the store plugin did not report its key count in the time the status request had"
		} else {
			st.StoreError = err.Error()
		}
		if p, ok := pub.h.(interface{ Info() sdk.Info }); ok {
			st.Store = p.Info().Name
		}
	}
	return st
}

// published returns the handle readers use.
func (f *Fold) published() (Handle, error) {
	pub := f.gens.published()
	if pub == nil {
		return nil, ErrNotReady
	}
	if pub.h.Exited() {
		return nil, exitedError(pub)
	}
	return pub.h, nil
}

// exitedError is what reads and the session say of a generation whose
// plugin process has died.
func exitedError(g *generation) error {
	return fmt.Errorf("%w: the store plugin of generation %d exited; restarting it%s",
		ErrStoreUnavailable, g.n, pluginCause(g.h, nil))
}

// Get reads one key from the published generation (Lookup without the
// position).
func (f *Fold) Get(ctx context.Context, key []byte) (sdk.Entry, error) {
	e, _, err := f.Lookup(ctx, key)
	return e, err
}

// Scan reads a range of the published generation for a reader, bounded by
// the read timeout as a whole, as Lookup's store reads are: a page, not a
// whole fold (Export and Verify, which read whole folds, use scanRead).
func (f *Fold) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	h, err := f.published()
	if err != nil {
		return err
	}
	return readError(f.storeRead(ctx, func(ctx context.Context) error { return h.Scan(ctx, r, fn) }))
}

// readError is a read's error as the fold's callers see it: a plugin that
// stopped answering during the read is ErrStoreUnavailable, as one found
// dead before it.
func readError(err error) error {
	if errors.Is(err, pluginhost.ErrPluginUnavailable) && !errors.Is(err, ErrStoreUnavailable) {
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	return err
}

func (f *Fold) stateNow() (State, string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state, f.reason
}

func (f *Fold) setState(s State, reason string) {
	f.mu.Lock()
	was, wasWhy := f.shownLocked()
	f.state, f.reason = s, reason
	f.mu.Unlock()
	f.stateShown(was, wasWhy)
}

// setOffline sets why the NATS connection is down ("" when it is up).
// While it is down the fold shows itself stalled with that reason, whatever
// its session is doing: it cannot know what it misses.
func (f *Fold) setOffline(why string) {
	f.mu.Lock()
	was, wasWhy := f.shownLocked()
	f.offlineWhy = why
	f.mu.Unlock()
	f.stateShown(was, wasWhy)
}

// shownLocked is the state the fold shows: its own, or stalled while the
// NATS connection is down.
func (f *Fold) shownLocked() (State, string) {
	if f.offlineWhy != "" && f.state != StateStopped {
		return StateStalled, f.offlineWhy
	}
	return f.state, f.reason
}

// stateShown logs the state shown and sets its metric, when it changed
// from was.
func (f *Fold) stateShown(was State, wasWhy string) {
	f.mu.RLock()
	s, reason := f.shownLocked()
	f.mu.RUnlock()
	if s == was && reason == wasWhy {
		return
	}
	f.cfg.Metrics.setState(f.cfg.Name, s)
	if reason != "" {
		f.log.Warn("fold state", "state", string(s), "reason", reason)
	} else {
		f.log.Info("fold state", "state", string(s))
	}
}

// verifyTransform returns a transform Verify may use beside the reader: a
// fork of the fold's, or the fold's own behind the lock the reader takes.
func (f *Fold) verifyTransform(ctx context.Context) (Transform, func(), error) {
	if fk, ok := f.cfg.Transform.(Forker); ok {
		return fk.Fork(ctx)
	}
	return lockedTransform{f.cfg.Transform, &f.transformMu}, func() {}, nil
}

// guardedScans is a store whose Scan is scanRead's: a whole-store scan
// (Verify's, a reconcile's) that ends when the store sends nothing for the
// read timeout.
type guardedScans struct {
	sdk.Store
	f *Fold
}

func (g guardedScans) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	return readError(g.f.scanRead(ctx, g.Store.Scan, r, fn))
}

// lockedTransform serializes the calls of two goroutines on one Transform.
type lockedTransform struct {
	Transform
	mu *sync.Mutex
}

func (l lockedTransform) Apply(ctx context.Context, in []sdk.Mutation) ([]sdk.Mutation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Transform.Apply(ctx, in)
}

// maxReported bounds the differences Verify returns; the summary counts all.
const maxReported = 1000

// Verify compares the published generation with the bucket without changing
// anything. Keys whose bucket revision is above the fold's cursor are in
// flight, not divergence, and are left out.
func (f *Fold) Verify(ctx context.Context) (reconcile.Summary, []reconcile.Difference, error) {
	pub := f.gens.published()
	if pub == nil {
		return reconcile.Summary{}, nil, ErrNotReady
	}
	cursor := pub.committedCursor()
	src := reconcile.Source{JS: f.js, Bucket: f.cfg.Bucket, Filters: f.cfg.Filters}
	if f.cfg.Transform != nil {
		t, release, err := f.verifyTransform(ctx)
		if err != nil {
			return reconcile.Summary{}, nil, fmt.Errorf("verify: transform: %w", err)
		}
		defer release()
		src.Map = func(ctx context.Context, key string, value []byte, rev uint64) (string, bool, error) {
			out, err := t.Apply(ctx, []sdk.Mutation{{Op: sdk.OpPut, Key: []byte(key), Value: value, Revision: rev}})
			if err != nil || len(out) == 0 {
				return "", false, err
			}
			return string(out[0].Key), true, nil
		}
	}
	var diffs []reconcile.Difference
	var inFlight reconcile.Summary
	sum, err := reconcile.Compare(ctx, src, guardedScans{pub.h, f}, func(d reconcile.Difference) error {
		if d.BucketRev > cursor {
			switch d.Kind {
			case reconcile.Missing:
				inFlight.Missing++
			case reconcile.Changed:
				inFlight.Changed++
			}
			return nil
		}
		if len(diffs) < maxReported {
			diffs = append(diffs, d)
		}
		return nil
	})
	if err != nil {
		return sum, nil, err
	}
	sum.Missing -= inFlight.Missing
	sum.Changed -= inFlight.Changed
	return sum, diffs, nil
}
