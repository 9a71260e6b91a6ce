package fold

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/reconcile"
	"github.com/slipstreamkv/slipstream/host/watch"
	"github.com/slipstreamkv/slipstream/sdk"
)

// batch is one unit handed from the reader to the applier.
type batch struct {
	muts     []sdk.Mutation
	cursor   uint64
	meta     map[string][]byte
	caughtUp bool
	// done, when set, is closed once the batch is committed.
	done chan struct{}
}

// follow runs the pipeline: a reader (this goroutine) reads, decodes,
// transforms and batches; an applier goroutine commits batches in order
// (applier.go). While the store applies batch N, batch N+1 accumulates,
// and while catching up it is sent before N has committed.
func (f *Fold) follow(ctx context.Context, tgt *generation, w *watch.Watch, cursor uint64,
	want map[string][]byte, reconcileFirst bool) (err error) {
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	applyCh := make(chan *batch, 1)
	applierDone := make(chan struct{})
	hand := &handoff{wake: w.Wake}
	var applyErr error
	go func() {
		defer close(applierDone)
		a := &applier{f: f, ctx: ctx, g: tgt, hand: hand}
		if err := a.contained(applyCh); err != nil {
			applyErr = err
			stopReading()
			for range applyCh {
			}
		}
	}()
	// However the reader ends (a panic included), the applier finishes
	// what it was given before the session is over.
	defer func() {
		close(applyCh)
		<-applierDone
		if applyErr != nil {
			err = applyErr
		}
	}()
	r := &reader{
		f: f, tgt: tgt, w: w, ctx: ctx, rctx: rctx, applyCh: applyCh, applierDone: applierDone, hand: hand,
		high: cursor, sent: cursor,
		nextCheck: time.Now().Add(f.cfg.CheckEvery), lastReconcile: time.Now(),
		progress: newProgress(w.InitialPending),
	}
	r.looped.Store(time.Now().UnixNano())
	gone := make(chan error, 1)
	stopGuard := f.guardStream(rctx, &r.looped, w.Identity, func(err error) { gone <- err; stopReading() })
	err = r.run(want, reconcileFirst)
	stopGuard()
	select {
	case gerr := <-gone:
		return gerr
	default:
		return err
	}
}

// stuckAfter is how long the reader may stay out of its loop before
// guardStream looks at the stream itself: longer than a check can take.
const stuckAfter = 2 * watch.CheckTimeout

// guardStream covers the reader while it is stuck out of its loop, where
// it cannot check the stream (a batch waiting for a store that does not
// answer, a slow transform; watch.Next itself always returns within its
// wait). Whenever the reader has not looped for
// stuckAfter, it reads the stream's identity itself, and calls gone with
// the error when the stream is gone or another one (a bucket deleted, or
// deleted and created again); the session then ends with that error. A
// reader stuck on a slow store, with the stream in place, is left alone.
func (f *Fold) guardStream(ctx context.Context, looped *atomic.Int64, id watch.Identity, gone func(error)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(stuckAfter / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if time.Since(time.Unix(0, looped.Load())) < stuckAfter {
				continue
			}
			if _, down := f.offline(); down {
				continue // the connection's own state says what is wrong
			}
			now, _, err := watch.Describe(ctx, f.js, f.cfg.Bucket)
			switch {
			case errors.Is(err, jetstream.ErrStreamNotFound):
				gone(fmt.Errorf("bucket %s: its stream %s was deleted", f.cfg.Bucket, id.Stream))
				return
			case err == nil && !now.Created.Equal(id.Created):
				gone(fmt.Errorf("bucket %s was deleted and created again (stream created %s)", f.cfg.Bucket, now.Created.Format(time.RFC3339Nano)))
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// reader is the reading half of follow. Its methods return false (or a nil
// error with nothing sent) once the applier has stopped: the applier's error
// is the session's.
type reader struct {
	f           *Fold
	tgt         *generation
	w           *watch.Watch
	ctx         context.Context // the session: its end is a shutdown
	rctx        context.Context // ends also when the applier fails
	applyCh     chan<- *batch
	applierDone <-chan struct{}
	hand        *handoff

	changes  []sdk.Mutation // received, not yet flushed
	size     int
	deadline time.Time // when the open batch's window ends
	high     uint64    // revision of the last change received
	sent     uint64    // cursor of the last batch sent
	// caughtUp: the last change received left nothing pending on the
	// server. The open batch goes to the applier as soon as it has room;
	// until then it keeps growing, so a fold behind a slow store catches up
	// in big batches instead of queueing one batch per update.
	caughtUp bool

	nextCheck       time.Time
	bookmarkFailing bool // the last check could not read the stream for a bookmark
	nextAlive       time.Time
	looped          atomic.Int64 // UnixNano of the loop's last turn (guardStream)
	lastReconcile   time.Time
	progress        *progress
	// offline: the NATS connection was down at the last look, and the
	// state the fold had before it (restored when it is back).
	offline   bool
	wasState  State
	wasReason string
}

func (r *reader) send(b *batch) bool {
	select {
	case r.applyCh <- b:
		return true
	case <-r.applierDone:
		return false
	}
}

// sendAndWait sends b and waits until it is committed.
func (r *reader) sendAndWait(b *batch) bool {
	b.done = make(chan struct{})
	if !r.send(b) {
		return false
	}
	select {
	case <-b.done:
		return true
	case <-r.rctx.Done():
		return false
	}
}

func (r *reader) run(want map[string][]byte, reconcileFirst bool) error {
	f := r.f
	f.setPending(r.w.InitialPending)
	var meta map[string][]byte
	if _, have := r.tgt.committed(); !metaEqual(have, want) {
		meta = want
	}
	if reconcileFirst && !f.cfg.hooks.NoReconcile {
		if err := r.repair(); err != nil {
			return err
		}
	}
	// The first batch records what the generation is a fold of, and marks a
	// watch with nothing to deliver as caught up.
	if meta != nil || r.w.InitialPending == 0 {
		if !r.send(&batch{cursor: r.sent, meta: meta, caughtUp: r.w.InitialPending == 0}) {
			return nil
		}
	}
	for {
		r.looped.Store(time.Now().UnixNano())
		if err := r.alive(); err != nil {
			return err
		}
		wait := min(time.Until(r.nextCheck), livenessPoll)
		if len(r.changes) > 0 {
			wait = min(wait, time.Until(r.deadline))
			if r.caughtUp {
				wait = min(wait, applierPoll)
			}
		}
		u, err := r.w.Next(r.rctx, max(wait, time.Millisecond))
		switch {
		case err == nil:
			if ok, err := r.receive(u); !ok || err != nil {
				return err
			}
		case errors.Is(err, watch.ErrNoUpdate):
			// The window bounds the wait of a batch still catching up; a
			// caught-up batch leaves as soon as the applier has room.
			if len(r.changes) > 0 && !r.caughtUp && !time.Now().Before(r.deadline) {
				if ok, err := r.flush(false); !ok || err != nil {
					return err
				}
			}
			if ok, err := r.flushIfIdle(); !ok || err != nil {
				return err
			}
		case r.ctx.Err() != nil:
			// Shutdown: commit what we hold, then stop.
			if len(r.changes) > 0 {
				_, err := r.flush(false)
				return err
			}
			return nil
		case r.rctx.Err() != nil:
			return nil
		case errors.Is(err, watch.ErrConsumerReset) && f.quickRestart():
			// A reconnect or a leader change: the next session starts at
			// once from the committed cursor, unless it keeps happening.
			f.log.Info("the consumer was reset; following again from the committed cursor", "err", err)
			return errRestart
		default:
			return fmt.Errorf("watch: %w", err)
		}
		if len(r.changes) == 0 && (f.reconcileReq.Swap(false) ||
			(f.cfg.ReconcileEvery > 0 && time.Since(r.lastReconcile) >= f.cfg.ReconcileEvery)) {
			if err := r.repair(); err != nil {
				return err
			}
		}
		if !time.Now().Before(r.nextCheck) {
			r.nextCheck = time.Now().Add(f.cfg.CheckEvery)
			if ok, err := r.check(); !ok || err != nil {
				return err
			}
		}
	}
}

// quickRestart says whether a session ended by a consumer reset may start
// the next at once: at most once per resetCalm, so that a consumer that
// keeps being reset stalls the fold with backoff and a reason instead of
// making a new one in a tight loop.
func (f *Fold) quickRestart() bool {
	now := time.Now().UnixNano()
	last := f.lastQuickRestart.Load()
	return now-last >= int64(resetCalm) && f.lastQuickRestart.CompareAndSwap(last, now)
}

// resetCalm is how far apart two quick restarts for consumer resets must be.
const resetCalm = 10 * time.Second

// livenessPoll bounds how long a store plugin's death goes unnoticed by a
// session that has nothing to write.
const livenessPoll = 200 * time.Millisecond

// alive ends the session when the plugin of the target or of the published
// generation has died, so that the next session reopens it at once rather
// than when the next write fails (a quiet fold may have none for hours,
// while its readers are turned away). It looks at most every livenessPoll.
func (r *reader) alive() error {
	now := time.Now()
	if now.Before(r.nextAlive) {
		return nil
	}
	r.nextAlive = now.Add(livenessPoll)
	if g := r.f.gens.dead(r.tgt); g != nil {
		return exitedError(g)
	}

	return nil
}

// receive adds one update to the open batch and flushes it when it is full
// or the consumer has caught up.
func (r *reader) receive(u watch.Update) (bool, error) {
	f := r.f
	if len(r.changes) == 0 {
		r.deadline = time.Now().Add(f.cfg.Window)
	}
	r.changes = append(r.changes, u.Mutation)
	r.size += len(u.Key) + len(u.Value)
	r.high = u.Revision
	r.caughtUp = u.Pending == 0
	f.setPending(u.Pending)
	r.progress.observe(f, u.Pending)
	if len(r.changes) >= f.cfg.MaxEntries || r.size >= f.cfg.MaxBytes {
		return r.flush(r.caughtUp)
	}
	return r.flushIfIdle()
}

// applierPoll is how often a caught-up reader whose open batch waits for a
// busy applier looks again, besides the applier's wake-up. (Without it the
// change stream's p50 was 2.36-3.56 ms against 1.86-2.72 ms with it, in
// alternated single runs of -only changes, 2026-12-07 21:27-21:30 UTC, on
// a noisy machine: kept until that is understood.)
const applierPoll = time.Millisecond

// handoff tells the reader when the applier is free for a caught-up batch.
// A caught-up batch goes to the applier only when the applier waits for
// one: queued behind the batch being committed, it would wait a whole
// commit before its own, while the changes after it would start another
// batch. Kept open instead, it takes in what arrives meanwhile, and leaves
// the moment the applier is free, which wakes the reader.
type handoff struct {
	idle   atomic.Bool // the applier waits for a batch
	wanted atomic.Bool // the reader holds a caught-up batch for it
	wake   func()      // wakes the reader's wait for updates
}

// free is the applier's: it is about to wait for a batch.
func (h *handoff) free() {
	h.idle.Store(true)
	if h.wanted.Swap(false) {
		h.wake()
	}
}

// busy is the applier's: it has a batch.
func (h *handoff) busy() { h.idle.Store(false) }

// ready is the reader's, holding a caught-up batch: whether the applier
// waits for a batch. Until took, the applier's next free wakes the reader,
// whatever else keeps the batch back meanwhile (a batch still queued for
// the applier). Both sides write their flag before they read the other's,
// so one of them sees the other.
func (h *handoff) ready() bool {
	h.wanted.Store(true)
	return h.idle.Load()
}

// took is the reader's: it sent the batch it held.
func (h *handoff) took() { h.wanted.Store(false) }

// flushIfIdle hands a caught-up batch to the applier when it waits for
// one and no other batch is queued; otherwise the batch keeps growing.
func (r *reader) flushIfIdle() (bool, error) {
	if !r.caughtUp || len(r.changes) == 0 || !r.hand.ready() || len(r.applyCh) > 0 {
		return true, nil
	}
	r.hand.took()
	return r.flush(true)
}

// flush transforms the open batch and hands it to the applier. Its cursor
// covers every change received, including those the transforms dropped.
func (r *reader) flush(caughtUp bool) (bool, error) {
	out := r.changes
	if t := r.f.cfg.Transform; t != nil && len(out) > 0 {
		var err error
		// Not rctx: at shutdown the held batch is still folded.
		if out, err = (lockedTransform{t, &r.f.transformMu}).Apply(context.WithoutCancel(r.rctx), out); err != nil {
			return false, err
		}
	}
	b := &batch{cursor: r.high, caughtUp: caughtUp, muts: storeOps(out)}
	r.changes, r.size, r.sent, r.caughtUp = nil, 0, r.high, false
	return r.send(b), nil
}

// check runs the live floor guard and commits a bookmark when the fold is
// idle and the guard proved a later position.
func (r *reader) check() (bool, error) {
	f := r.f
	if _, down := f.offline(); down {
		return true, nil // a check would only wait out its timeout
	}
	began := time.Now()
	bookmark, err := r.w.Check(r.rctx)
	f.log.Debug("live check", "took", time.Since(began), "bookmark", bookmark, "err", err)
	f.sawLast(r.w.StreamLast())
	// Said once while it lasts: a filtered fold without bookmarks falls
	// behind the stream, and expires, when only other keys change.
	switch berr := r.w.BookmarkError(); {
	case berr != nil && !r.bookmarkFailing:
		f.log.Warn("live check: no bookmark until the stream can be read", "err", berr)
		r.bookmarkFailing = true
	case berr == nil && r.bookmarkFailing:
		f.log.Info("live check: bookmarks again")
		r.bookmarkFailing = false
	}
	if err != nil {
		if r.rctx.Err() != nil {
			return true, nil
		}
		if !expired(err) || !f.cfg.hooks.NoRebuild {
			return false, err
		}
	}
	if len(r.changes) > 0 || bookmark <= r.sent {
		return true, nil
	}
	r.high, r.sent = bookmark, bookmark
	return r.send(&batch{cursor: bookmark, caughtUp: f.pending.Load() == 0}), nil
}

// repair brings the store in line with the bucket at the cursor sent so far:
// everything received is committed first, and the repairs are committed at
// the same cursor before reading on. Updates above the cursor come later
// from the watch, in order, so nothing the reconcile decides can hide them.
func (r *reader) repair() error {
	f := r.f
	r.lastReconcile = time.Now()
	if f.cfg.Transform != nil {
		return errRebuildToReconcile
	}
	if !r.sendAndWait(&batch{cursor: r.sent}) {
		return nil
	}
	prev, _ := f.stateNow()
	f.setState(StateReconciling, "")
	var muts []sdk.Mutation
	src := reconcile.Source{JS: f.js, Bucket: f.cfg.Bucket, Filters: f.cfg.Filters}
	// The scan of the store ends, as a verify's does, once the store sends
	// nothing for the read timeout: a hung plugin would otherwise leave the
	// fold reconciling, with no reason shown, until it is stopped.
	sum, err := reconcile.Repair(r.rctx, src, guardedScans{r.tgt.h, f}, r.sent, func(m sdk.Mutation) error {
		if muts = append(muts, m); len(muts) < f.cfg.MaxEntries {
			return nil
		}
		b := &batch{cursor: r.sent, muts: muts}
		muts = nil
		if !r.send(b) {
			return r.rctx.Err()
		}
		return nil
	})
	if err != nil {
		f.reconcileReq.Store(true) // the next session tries again
		return fmt.Errorf("reconcile: %w", err)
	}
	if !r.sendAndWait(&batch{cursor: r.sent, muts: muts}) {
		return nil
	}
	f.cfg.Metrics.repaired.WithLabelValues(f.cfg.Name, "stale").Add(float64(sum.Stale))
	f.cfg.Metrics.repaired.WithLabelValues(f.cfg.Name, "refetched").Add(float64(sum.Missing + sum.Changed))
	f.log.Info("reconciled", "bucket_keys", sum.BucketKeys, "fold_keys", sum.FoldKeys,
		"stale", sum.Stale, "missing", sum.Missing, "changed", sum.Changed, "cursor", r.sent)
	f.setState(prev, "")
	return nil
}

// storeOps makes ms what a store is sent, in place: a purge is a delete to
// a store (sdk.OpPurge).
func storeOps(ms []sdk.Mutation) []sdk.Mutation {
	for i := range ms {
		if ms[i].Op == sdk.OpPurge {
			ms[i].Op = sdk.OpDelete
		}
	}
	return ms
}
