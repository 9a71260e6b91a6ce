package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const bucketName = "crash"

// result is one row of the table: a scenario on one store.
type result struct {
	scenario, store string
	cycles          int
	faults          int
	divergences     int
	orphans         int
	readsFailed     int // after recovery
	outageErrs      int // live reads while faults came and went
	liveReads       int
	unverified      int // live reads answering 200 with a revision the program never saw acknowledged
	recoveries      []time.Duration
	// accepted: fault to the post-fault write accepted by NATS.
	accepted []time.Duration
	// staleSynced is the longest a fold reported synced while its cursor
	// was behind an accepted post-fault write.
	staleSynced time.Duration
	err         error
	notes       []string
}

func (r *result) failed() bool {
	return r.err != nil || r.divergences > 0 || r.readsFailed > 0 || r.outageErrs > 0 || r.orphans > 0
}

// env is one scenario's world: its servers, bucket, host, writer, reader.
type env struct {
	o        *options
	reg      *registry
	scenario string
	rng      *rand.Rand
	seed     uint64
	dir      string
	folds    []foldSpec
	res      map[string]*result // by fold name

	nodes []*natsNode
	nc    *nats.Conn
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	hist  *history
	h     *host
	w     *writer
	lr    *liveReader
	marks int
	start time.Time
}

func newEnv(o *options, reg *registry, root, scenario string, index int) (*env, error) {
	seed := o.seed + uint64(index)*0x9e3779b97f4a7c15
	e := &env{o: o, reg: reg, scenario: scenario, seed: seed, rng: rand.New(rand.NewPCG(seed, 1)),
		dir: filepath.Join(root, scenario), res: map[string]*result{}, hist: newHistory(), start: time.Now()}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	for _, s := range o.stores {
		f := foldSpec{name: "crash-" + s, store: s}
		e.folds = append(e.folds, f)
		e.res[f.name] = &result{scenario: scenario, store: s}
	}
	return e, nil
}

func (e *env) logf(format string, args ...any) {
	if e.o.verbose {
		fmt.Fprintf(os.Stderr, "%s %-14s %s\n", time.Now().Format("15:04:05.000"), e.scenario, fmt.Sprintf(format, args...))
	}
}

// note records a remark on every row of the scenario.
func (e *env) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	for _, f := range e.folds {
		e.res[f.name].notes = append(e.res[f.name].notes, s)
	}
	e.logf("%s", s)
}

// open connects the program's own client and creates the bucket.
func (e *env) open(ctx context.Context, url string, replicas int) error {
	nc, err := connect(ctx, url)
	if err != nil {
		return err
	}
	e.nc = nc
	if e.js, err = jetstream.New(nc); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		e.kv, err = e.js.CreateKeyValue(cctx, jetstream.KeyValueConfig{
			Bucket: bucketName, History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
		})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("create bucket %s (replicas %d): %w", bucketName, replicas, err)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// startHost writes the config with slipstream's NATS url and starts the
// host (without waiting for it to be ready), the writer (paused) and the
// live reader (disabled).
func (e *env) startHost(natsURL string, replicas int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	api := "127.0.0.1:" + strconv.Itoa(port)
	cfg := filepath.Join(e.dir, "slipstream.toml")
	if err := writeConfig(cfg, filepath.Join(e.dir, "data"), e.o.binDir, natsURL, api, bucketName, replicas, e.folds); err != nil {
		return err
	}
	e.h = newHost(e.reg, filepath.Join(e.o.binDir, "slipstream"), cfg, api, filepath.Join(e.dir, "slipstream.log"))
	if err := e.h.start(); err != nil {
		return err
	}
	e.w = newWriter(e.kv, e.seed, e.o.keys, e.o.rate, e.hist)
	// The reader starts once the API answers (waitAPI).
	e.lr = newLiveReader(e.h, e.folds, e.w.keys, e.hist, e.seed)
	return nil
}

// close stops everything the scenario started.
func (e *env) close() {
	if e.lr != nil {
		e.lr.stop()
		e.lr.mu.Lock()
		for _, f := range e.folds {
			r := e.res[f.name]
			r.outageErrs += e.lr.errs[f.name]
			r.liveReads += e.lr.reads[f.name]
			r.unverified += e.lr.unverified[f.name]
			for _, s := range e.lr.samples[f.name] {
				r.notes = append(r.notes, "live read error: "+s)
			}
		}
		e.lr.mu.Unlock()
	}
	for _, f := range e.folds {
		r := e.res[f.name]
		if len(r.accepted) > 0 {
			r.notes = append(r.notes, fmt.Sprintf("post-fault write accepted by NATS after p50 %s max %s; longest the fold said synced while behind it: %s",
				fmtDur(percentile(r.accepted, 0.5), 1), fmtDur(slices.Max(r.accepted), 1), fmtDur(r.staleSynced, 1)))
		}
	}
	if e.w != nil {
		e.w.stop()
		e.note("writer: %d puts, %d deletes, %d purges, %d writes refused or timed out during faults",
			e.w.puts.Load(), e.w.deletes.Load(), e.w.purges.Load(), e.w.errs.Load())
	}
	if e.h != nil {
		e.h.stop()
	}
	if e.nc != nil {
		e.nc.Close()
	}
	for _, n := range e.nodes {
		n.kill()
	}
}

// run is the whole scenario; an error means it could not be run to the end.
func (e *env) run(ctx context.Context, body func(context.Context, *env) error) {
	defer e.close()
	if err := body(ctx, e); err != nil {
		for _, f := range e.folds {
			e.res[f.name].err = err
		}
	}
}

// pause is the writer's run time before a fault: 0.5-3 s (-smoke 0.3-0.8 s).
func (e *env) pause() time.Duration {
	lo, hi := 500*time.Millisecond, 3*time.Second
	if e.o.smoke {
		lo, hi = 300*time.Millisecond, 800*time.Millisecond
	}
	return lo + time.Duration(e.rng.Int64N(int64(hi-lo)))
}

func (e *env) stream(ctx context.Context) (*jetstream.StreamInfo, error) {
	var last error
	for range 50 {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := e.js.Stream(cctx, "KV_"+bucketName)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = s.Info(cctx); err == nil {
				cancel()
				return info, nil
			}
		}
		cancel()
		last = err
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("stream info KV_%s: %w", bucketName, last)
}

func (e *env) lastSeq(ctx context.Context) (uint64, error) {
	info, err := e.stream(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// marker writes a new value of the sentinel key after a fault and returns
// its revision.
func (e *env) marker(ctx context.Context) (uint64, error) {
	e.marks++
	return marker(ctx, e.kv, e.hist, e.marks, e.o.wait)
}

// waitCaughtUp waits until every fold is synced with its cursor at or past
// rev and reads the sentinel key at revision rev or later (and extra, when
// given, holds), and returns each fold's time since since.
func (e *env) waitCaughtUp(ctx context.Context, since time.Time, rev uint64, extra func(foldSpec) bool) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	deadline := time.Now().Add(e.o.wait)
	last := map[string]string{}
	behind := map[string]time.Time{} // since when a fold says synced with its cursor below rev
	for {
		for _, f := range e.folds {
			if _, ok := out[f.name]; ok {
				continue
			}
			if extra != nil && !extra(f) {
				last[f.name] = "its store plugin has not been restarted"
				continue
			}
			st, err := e.h.status(ctx, f.name)
			if err != nil {
				last[f.name] = err.Error()
				continue
			}
			last[f.name] = st.String()
			if st.State == "synced" && st.Cursor < rev {
				if behind[f.name].IsZero() {
					behind[f.name] = time.Now()
				}
				r := e.res[f.name]
				r.staleSynced = max(r.staleSynced, time.Since(behind[f.name]))
			} else {
				behind[f.name] = time.Time{}
			}
			if st.State != "synced" || st.Cursor < rev {
				continue
			}
			a := e.h.read(ctx, f.name, sentinelKey)
			if a.err != nil || a.status != 200 {
				last[f.name] = fmt.Sprintf("%s; read of %s: %v %d %s", st, sentinelKey, a.err, a.status, short(a.body))
				continue
			}
			if got, _ := strconv.ParseUint(a.revision, 10, 64); got < rev {
				last[f.name] = fmt.Sprintf("%s; read of %s: revision %s < %d", st, sentinelKey, a.revision, rev)
				continue
			}
			out[f.name] = time.Since(since)
		}
		if len(out) == len(e.folds) {
			return out, nil
		}
		if time.Now().After(deadline) {
			var msg []string
			for _, f := range e.folds {
				if _, ok := out[f.name]; !ok {
					msg = append(msg, f.name+": "+last[f.name])
				}
			}
			return nil, fmt.Errorf("not recovered within %v (marker revision %d): %s\nslipstream log:\n%s",
				e.o.wait, rev, strings.Join(msg, "; "), tail(e.h.logPath, 25))
		}
		if e.h.p.exited() {
			return nil, fmt.Errorf("slipstream exited:\n%s", tail(e.h.logPath, 25))
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// recovered adds one fault and its recovery time to every fold's row, and
// how long NATS took to accept the post-fault write (0: not measured).
func (e *env) recovered(rec map[string]time.Duration, accepted time.Duration) {
	for _, f := range e.folds {
		r := e.res[f.name]
		r.faults++
		r.recoveries = append(r.recoveries, rec[f.name])
		if accepted > 0 {
			r.accepted = append(r.accepted, accepted)
		}
	}
}

// waitSynced waits, with the writer paused, until every fold is synced with
// its cursor at last.
func (e *env) waitSynced(ctx context.Context, last uint64) error {
	deadline := time.Now().Add(e.o.wait)
	for _, f := range e.folds {
		for {
			st, err := e.h.status(ctx, f.name)
			if err == nil && st.State == "synced" && st.Cursor >= last {
				break
			}
			if e.h.p.exited() {
				return fmt.Errorf("slipstream exited:\n%s", tail(e.h.logPath, 25))
			}
			if time.Now().After(deadline) {
				why := st.String()
				if err != nil {
					why = err.Error()
				}
				return fmt.Errorf("%s: not synced at stream last sequence %d within %v: %s\nslipstream log:\n%s",
					f.name, last, e.o.wait, why, tail(e.h.logPath, 25))
			}
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// check runs after each recovered cycle: with the writer paused, it waits
// for the folds to reach the stream's last sequence, compares each fold
// with the bucket on its own (listing both), and reads random keys.
func (e *env) check(ctx context.Context, cycle int) error {
	e.w.pause()
	var bucket map[string]kvEntry
	listings := map[string][]foldEntry{}
	for attempt := 1; ; attempt++ {
		last, err := e.lastSeq(ctx)
		if err != nil {
			return err
		}
		if err := e.waitSynced(ctx, last); err != nil {
			return fmt.Errorf("cycle %d: %w", cycle, err)
		}
		if bucket, err = listBucket(ctx, e.kv); err != nil {
			return fmt.Errorf("cycle %d: %w", cycle, err)
		}
		for _, f := range e.folds {
			if listings[f.name], err = listFold(ctx, e.h.client, e.h.api, f.name); err != nil {
				return fmt.Errorf("cycle %d: %w", cycle, err)
			}
		}
		again, err := e.lastSeq(ctx)
		if err != nil {
			return err
		}
		if again == last {
			break
		}
		// A write given up as failed landed after all (a cluster
		// committing a proposal late): list again.
		e.note("cycle %d: the stream moved from %d to %d during the comparison; compared again", cycle, last, again)
		if attempt == 5 {
			return fmt.Errorf("cycle %d: the stream kept moving with the writer paused", cycle)
		}
	}
	var dead []string
	for _, k := range e.w.keys {
		if _, ok := bucket[k]; !ok {
			dead = append(dead, k)
		}
	}
	live := make([]string, 0, len(bucket))
	for k := range bucket {
		live = append(live, k)
	}
	slices.Sort(live)
	for _, f := range e.folds {
		r := e.res[f.name]
		divs := compare(bucket, listings[f.name])
		if len(divs) > 0 {
			r.divergences += len(divs)
			e.reportDivergence(ctx, f, cycle, len(bucket), len(listings[f.name]), divs)
		}
		var bad []string
		for i := range e.o.reads {
			key := ""
			switch {
			case i%3 == 2 && len(dead) > 0:
				key = dead[e.rng.IntN(len(dead))]
			case i == 0:
				key = "k.never-written"
			case len(live) > 0:
				key = live[e.rng.IntN(len(live))]
			default:
				key = e.w.keys[e.rng.IntN(len(e.w.keys))]
			}
			if msg := checkRead(key, bucket, e.h.read(ctx, f.name, key)); msg != "" {
				r.readsFailed++
				bad = append(bad, key+": "+msg)
			}
		}
		if len(bad) > 0 {
			s := fmt.Sprintf("%s %s cycle %d: %d of %d reads failed after recovery:\n  %s",
				e.scenario, f.store, cycle, len(bad), e.o.reads, strings.Join(bad[:min(len(bad), 10)], "\n  "))
			fmt.Fprintln(os.Stderr, "READS FAILED", s)
			r.notes = append(r.notes, s)
		}
		r.cycles++
	}
	e.logf("cycle %d checked: %d live keys in the bucket", cycle, len(bucket))
	return nil
}

func (e *env) reportDivergence(ctx context.Context, f foldSpec, cycle, bucketKeys, foldKeys int, divs []divergence) {
	var b strings.Builder
	fmt.Fprintf(&b, "DIVERGENCE %s %s (fold %s) cycle %d: %d keys differ (bucket %d live keys, fold %d)\n",
		e.scenario, f.store, f.name, cycle, len(divs), bucketKeys, foldKeys)
	for _, d := range divs[:min(len(divs), 20)] {
		fmt.Fprintf(&b, "  %s\n", d)
	}
	if st, err := e.h.status(ctx, f.name); err == nil {
		fmt.Fprintf(&b, "  fold status: %s\n", st)
	}
	fmt.Fprintf(&b, "  slipstream verify: %s\n", e.h.verifyReport(ctx, f.name))
	fmt.Fprintf(&b, "  slipstream log (%s), last lines:\n%s\n", e.h.logPath, tail(e.h.logPath, 30))
	fmt.Fprint(os.Stderr, b.String())
	r := e.res[f.name]
	r.notes = append(r.notes, fmt.Sprintf("cycle %d: %d divergences, first: %s", cycle, len(divs), divs[0]))
}

// waitExit waits up to d for every pid to end; it returns those still alive.
func waitExit(pids []int, d time.Duration) (left []int, took time.Duration) {
	start := time.Now()
	for {
		left = left[:0]
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			} else {
				reap(pid)
			}
		}
		if len(left) == 0 || time.Since(start) > d {
			return left, time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errNoPlugin = errors.New("the host has no store plugin process")

// onceErr runs f in the background; wait returns its error.
type onceErr struct {
	wg  sync.WaitGroup
	err error
}

func (o *onceErr) run(f func() error) {
	o.wg.Add(1)
	go func() { defer o.wg.Done(); o.err = f() }()
}

func (o *onceErr) wait() error { o.wg.Wait(); return o.err }
