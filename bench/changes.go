package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/client"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Target of the change-stream rows (issue 15): put→event p99 at each
// subscriber of GET /v1/folds/{fold}/watch is at most the p99 of raw
// kv.WatchAll watchers, measured just before with as many of them, plus
// this.
const changeP99Slack = 2 * time.Millisecond

// changeSetupWait bounds the wait for the subscribers of a change phase to
// be connected, and then to see its first put (the sentinel).
const changeSetupWait = 15 * time.Second

// sendTimes records when each put of a change phase was handed to the NATS
// client.
type sendTimes struct {
	base  time.Time
	first int            // the value index of put 0: each phase has its own
	t0    []atomic.Int64 // ns since base + 1; 0: not sent yet
}

func (s *sendTimes) n() int { return len(s.t0) }

func (s *sendTimes) sent(i int) { s.t0[i].Store(int64(time.Since(s.base)) + 1) }

// tally is what one subscriber of a change phase received. Its fields are
// written by the subscriber's goroutine only; the phase reads them once
// that goroutine has returned (got is read while it runs, for progress).
type tally struct {
	lat      []time.Duration // put i's send to its arrival here
	seen     []bool
	got      atomic.Int64 // distinct puts of the phase received
	dup      int          // puts received again
	extra    int          // events of no put of the phase
	early    int          // puts received before their send was recorded (must stay 0)
	retries  int          // reconnections (the Go client's OnRetry)
	ready    chan struct{}
	sentinel chan struct{}
	isReady  bool
	sawSent  bool
}

func newTally(n int) *tally {
	return &tally{lat: make([]time.Duration, n), seen: make([]bool, n),
		ready: make(chan struct{}), sentinel: make(chan struct{})}
}

// markReady says the subscriber is connected: puts made from now on reach
// it.
func (t *tally) markReady() {
	if !t.isReady {
		t.isReady = true
		close(t.ready)
	}
}

// receive takes in the put whose value has index idx (parseIndex), and
// reports whether the subscriber has now received every put of the phase.
// Values of another phase (a fold still delivering the puts of the phase
// before) are extra, as are values without an index.
func (t *tally) receive(s *sendTimes, idx int) bool {
	now := time.Since(s.base)
	idx -= s.first
	switch {
	case idx == s.n():
		if !t.sawSent {
			t.sawSent = true
			close(t.sentinel)
		}
	case idx < 0 || idx > s.n():
		t.extra++
	case t.seen[idx]:
		t.dup++
	default:
		t.seen[idx] = true
		if t0 := s.t0[idx].Load(); t0 > 0 {
			t.lat[idx] = now - time.Duration(t0-1)
		} else {
			t.early++
		}
		return int(t.got.Add(1)) == s.n()
	}
	return false
}

// subscribe follows the main bucket's changes into t until every put of
// the phase arrived or ctx ends; it calls t.markReady once connected.
type subscribe func(ctx context.Context, sub int, t *tally, s *sendTimes) error

// changeResult is the outcome of one change phase.
type changeResult struct {
	n, subs  int
	lat      []time.Duration // every subscriber's, the warm-up's dropped; sorted
	dup      int
	extra    int
	retries  int
	took     time.Duration // the first put's send to the last arrival
	p50, p99 time.Duration
}

// changeWarm is the number of puts at the start of a change phase left out
// of its latencies: half a second's, at most a fifth of them.
func (b *bench) changeWarm(n int) int { return min(b.o.changeRate/2, n/5) }

// changePhase puts -changes indexed values (at most half of -keys) to as
// many distinct keys of the main bucket, at -change-rate, while
// -subscribers subscribers follow the bucket with sub; it fails unless
// every subscriber receives every put. Distinct keys, since with History 1
// NATS drops a value overwritten before a consumer read it: each phase's
// puts overwrite the keys of the phase before, which every subscriber had
// received by then. The keys are the bucket's last (changeKey), away from
// the first few that the live phases put indexed values to and read back.
// At most half of them, so that the stream keeps the messages of the other
// half and a stopped fold's cursor stays in it (overwriting every key would
// move the stream's first sequence past it, and the fold would rebuild).
//
// ref, when not nil, is one more subscriber, measured apart (refRes): a
// reference beside the -subscribers, not one of them.
func (b *bench) changePhase(ctx context.Context, label string, sub, ref subscribe) (res, refRes changeResult, err error) {
	o := b.o
	n := changeCount(o)
	first := b.changeIndex
	b.changeIndex += n + 1
	err = labelled(ctx, label, func(ctx context.Context) error {
		s := &sendTimes{base: time.Now(), first: first, t0: make([]atomic.Int64, n)}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		subs := o.subscribers
		if ref != nil {
			subs++
		}
		tallies := make([]*tally, subs)
		errs := make([]error, subs)
		failed := make(chan struct{}, subs)
		var wg sync.WaitGroup
		for i := range tallies {
			t := newTally(n)
			tallies[i] = t
			fn := sub
			if i == o.subscribers {
				fn = ref
			}
			wg.Go(func() {
				if errs[i] = fn(sctx, i, t, s); errs[i] != nil {
					errs[i] = fmt.Errorf("subscriber %d: %w", i, errs[i])
					failed <- struct{}{}
				}
			})
		}
		stop := func(err error) error {
			cancel()
			wg.Wait()
			return fmt.Errorf("%s: %w", label, errors.Join(append([]error{err}, errs...)...))
		}
		waitAll := func(what string, ch func(t *tally) chan struct{}) error {
			deadline := time.After(changeSetupWait)
			for i, t := range tallies {
				select {
				case <-ch(t):
				case <-failed:
					return stop(fmt.Errorf("a subscriber failed before it %s", what))
				case <-deadline:
					return stop(fmt.Errorf("subscriber %d has not %s after %v", i, what, changeSetupWait))
				case <-ctx.Done():
					return stop(ctx.Err())
				}
			}
			return nil
		}
		if err := waitAll("connected", func(t *tally) chan struct{} { return t.ready }); err != nil {
			return err
		}
		// The sentinel: every subscriber receives puts from here on.
		kv, err := b.pub.js.KeyValue(ctx, bucketMain)
		if err != nil {
			return stop(err)
		}
		if _, err := kv.Put(ctx, b.changeKey(n), b.vals.indexed(first+n)); err != nil {
			return stop(err)
		}
		if err := waitAll("seen the first put", func(t *tally) chan struct{} { return t.sentinel }); err != nil {
			return err
		}
		interval := time.Second / time.Duration(o.changeRate)
		cpu0 := selfCPU()
		start := time.Now()
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			s.sent(i)
			if _, err := b.pub.js.PublishAsync(subject(bucketMain, b.changeKey(i)), b.vals.indexed(first+i), jetstream.WithStallWait(o.wait)); err != nil {
				return stop(fmt.Errorf("put %d of %d: %w", i+1, n, err))
			}
			if i%1024 == 0 {
				select {
				case <-failed:
					return stop(fmt.Errorf("a subscriber failed after %d puts", i))
				case <-ctx.Done():
					return stop(ctx.Err())
				default:
				}
			}
		}
		sentIn := time.Since(start)
		select {
		case <-b.pub.js.PublishAsyncComplete():
		case <-time.After(o.wait):
			return stop(fmt.Errorf("%d puts unacknowledged after %v", b.pub.js.PublishAsyncPending(), o.wait))
		}
		if f := b.pub.failed.Swap(0); f > 0 {
			return stop(fmt.Errorf("%d of %d puts failed", f, n))
		}
		// Every subscriber must get every put; the wait is bounded.
		deadline := time.Now().Add(o.wait)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			complete := true
			for _, t := range tallies {
				complete = complete && int(t.got.Load()) == n
			}
			if complete {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		cpu := selfCPU() - cpu0
		var missing []error
		for i, t := range tallies {
			if got := int(t.got.Load()); got != n {
				first := slices.Index(t.seen, false)
				missing = append(missing, fmt.Errorf("subscriber %d received %d of %d puts (the first missing: put %d, key %s)",
					i, got, n, first, b.changeKey(first)))
			}
			if t.early > 0 {
				missing = append(missing, fmt.Errorf("subscriber %d received %d puts before they were sent: the probe is broken", i, t.early))
			}
		}
		if err := errors.Join(append(missing, errs...)...); err != nil {
			return fmt.Errorf("%s: not every change was delivered within %v: %w", label, o.wait, err)
		}
		warm := b.changeWarm(n)
		res = tallied(s, tallies[:o.subscribers], warm)
		if ref != nil {
			refRes = tallied(s, tallies[o.subscribers:], warm)
			b.logf("  %-24s the reference subscriber: put→event p50 %s p99 %s max %s", label,
				fmtMs(refRes.p50), fmtMs(refRes.p99), fmtMs(refRes.lat[len(refRes.lat)-1]))
		}
		b.logf("  %-24s %d puts sent in %v, all delivered to %d subscribers (and the reference: %t) %v after the first put: put→event p50 %s p99 %s max %s (%d events, %d warm-up puts left out); %d twice, %d extra, %d reconnections; process CPU %v (%.1f µs/event)",
			label, n, sentIn.Round(time.Millisecond), o.subscribers, ref != nil, res.took.Round(time.Millisecond), fmtMs(res.p50), fmtMs(res.p99),
			fmtMs(res.lat[len(res.lat)-1]), len(res.lat), warm, res.dup, res.extra, res.retries,
			cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(n*len(tallies)))
		return nil
	})
	return res, refRes, err
}

// changeCount is the number of puts of each change phase.
func changeCount(o *options) int { return max(1, min(o.changes, o.keys/2)) }

// changeKey is the key of put i of a change phase (i = changeCount is the
// sentinel's).
func (b *bench) changeKey(i int) string { return keyOf(b.o.keys - 1 - i) }

// tallied pools what the subscribers of ts received into a result,
// leaving out the latencies of the first warm puts.
func tallied(s *sendTimes, ts []*tally, warm int) changeResult {
	res := changeResult{n: s.n(), subs: len(ts)}
	var last time.Duration
	for _, t := range ts {
		res.lat = append(res.lat, t.lat[warm:]...)
		res.dup += t.dup
		res.extra += t.extra
		res.retries += t.retries
		for i, l := range t.lat {
			last = max(last, time.Duration(s.t0[i].Load()-1)+l)
		}
	}
	res.took = last - time.Duration(s.t0[0].Load()-1)
	slices.Sort(res.lat)
	res.p50, res.p99 = percentile(res.lat, 0.50), percentile(res.lat, 0.99)
	return res
}

// rawSubscriber follows the bucket with its own connection and a
// kv.WatchAll of updates only: what an app would do without slipstream.
func (b *bench) rawSubscriber(ctx context.Context, sub int, t *tally, s *sendTimes) error {
	nc, js, err := connect(b.url, fmt.Sprintf("slipstream-bench-raw-watch-%d", sub))
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := js.KeyValue(ctx, bucketMain)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer w.Stop()
	t.markReady() // the consumer exists once WatchAll returned
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("raw watcher closed")
			}
			if e != nil && t.receive(s, parseIndex(e.Value())) {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// sseSubscriber follows the fold's change stream through the Go client's
// Watch (server-sent events), a client of its own each.
func (b *bench) sseSubscriber(a *apiServer) subscribe {
	return func(ctx context.Context, sub int, t *tally, s *sendTimes) error {
		c, err := client.New(a.base)
		if err != nil {
			return err
		}
		opts := client.WatchOptions{OnRetry: func(err error, wait time.Duration) {
			t.retries++
			b.logf("  subscriber %d reconnects in %v: %v", sub, wait.Round(time.Millisecond), err)
		}}
		for ev, err := range c.Watch(ctx, "bench", opts) {
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return nil
				}
				return err
			case ev.Type == client.EventBookmark:
				t.markReady() // the first bookmark: the stream's position is taken
			case ev.Type == client.EventPut:
				if t.receive(s, parseIndex(ev.Value)) {
					return nil
				}
			case ev.Type == client.EventReset:
				return fmt.Errorf("the stream was reset: %s", ev.Reason)
			default:
				t.extra++
			}
		}
		return nil
	}
}

// foldChanges measures be's change stream against raw watchers in -runs
// rounds: a phase of raw kv.WatchAll watchers, then one of subscribers of
// the fold's GET /v1/folds/{fold}/watch through the Go client, on the same
// number of puts at the same rate. The fold follows the bucket during
// both.
func (b *bench) foldChanges(ctx context.Context, be *backend, r *foldRun, a *apiServer) error {
	o := b.o
	var raws, sses, refs []changeResult
	for round := 1; round <= o.runs; round++ {
		b.logf("change round %d of %d, %s", round, o.runs, be.name)
		raw, _, err := b.changePhase(ctx, "raw-changes-"+be.name, b.rawSubscriber, nil)
		if err != nil {
			return err
		}
		// The fold catches up with the raw phase's puts first.
		last, err := b.lastSeq(ctx)
		if err != nil {
			return err
		}
		if _, err := r.waitSynced(ctx, last, 1, o.wait); err != nil {
			return err
		}
		s0 := r.applyStats()
		res, ref, err := b.changePhase(ctx, "changes-"+be.name, b.sseSubscriber(a), foldSubscriber(r.f))
		if err != nil {
			return err
		}
		b.logf("  %-24s the fold committed the puts in %s", "changes-"+be.name, r.applyStats().since(s0))
		raws, sses, refs = append(raws, raw), append(sses, res), append(refs, ref)
	}
	col := func(rs []changeResult, p99 bool) []float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			out[i] = float64(r.p50)
			if p99 {
				out[i] = float64(r.p99)
			}
		}
		return out
	}
	latCell := func(rs []changeResult) string {
		p99 := col(rs, true)
		return fmt.Sprintf("%s (%s)%s", fmtMs(time.Duration(medianOf(p99))), fmtMs(time.Duration(medianOf(col(rs, false)))), spread(p99, msOf))
	}
	delivered := func(rs []changeResult) string {
		dup := 0
		for _, r := range rs {
			dup += r.dup
		}
		s := fmt.Sprintf("all %d × %s delivered in every round", rs[0].subs, fmtCount(rs[0].n))
		if dup > 0 {
			s += fmt.Sprintf(", %d twice", dup)
		}
		return s
	}
	raw99 := col(raws, true)
	diff := func(rs []changeResult) (time.Duration, string) {
		p99 := col(rs, true)
		d := time.Duration(medianOf(p99) - medianOf(raw99))
		return d, fmtDelta(d) + rangeOf(pairwise(p99, raw99, sub), deltaOf)
	}
	d, ratio := diff(sses)
	b.add(row{
		group: groupChanges,
		scenario: fmt.Sprintf("change stream: %s puts of distinct keys at %s/s → %s → %d subscribers (client.Watch, SSE), put→event p99 (p50)",
			fmtCount(sses[0].n), fmtCount(o.changeRate), be.name, sses[0].subs),
		value:    latCell(sses) + ", " + delivered(sses),
		baseline: latCell(raws) + fmt.Sprintf(" %d raw kv.WatchAll, ", raws[0].subs) + delivered(raws),
		ratio:    ratio,
		target:   fmt.Sprintf("≤ raw + %d ms", changeP99Slack/time.Millisecond),
		result:   verdict(d <= changeP99Slack),
	})
	_, ratio = diff(refs)
	b.add(row{
		group: groupChanges,
		scenario: fmt.Sprintf("reference: the same puts → Fold.Watch + Changes.Next in process (one subscriber beside the %d; no HTTP), put→event p99 (p50)",
			sses[0].subs),
		value:    latCell(refs) + ", " + delivered(refs),
		baseline: latCell(raws) + fmt.Sprintf(" %d raw kv.WatchAll", raws[0].subs),
		ratio:    ratio, target: "—", result: "—",
	})
	return nil
}

// foldSubscriber follows the fold's changes in process, as a Go program
// embedding the fold would: Fold.Watch from the current position, then
// Changes.Next.
func foldSubscriber(f *fold.Fold) subscribe {
	return func(ctx context.Context, sub int, t *tally, s *sendTimes) error {
		ch, err := f.Watch(fold.Position{}, nil)
		if err != nil {
			return err
		}
		defer ch.Close()
		t.markReady()
		for {
			cs, _, err := ch.Next(ctx, time.Second)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, c := range cs {
				if c.Op != sdk.OpPut {
					t.extra++
				} else if t.receive(s, parseIndex(c.Value)) {
					return nil
				}
			}
		}
	}
}
