package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// sentinelKey is written only by markers, never deleted: the key probed to
// prove a fold has caught up with a write made after a fault.
const sentinelKey = "crash.sentinel"

// history records the value of every put the program saw acknowledged, by
// key and revision, so that a read answering 200 can be checked even while
// writes go on.
type history struct {
	mu   sync.Mutex
	puts map[string]map[uint64]uint64 // key -> revision -> hash of the value
}

func newHistory() *history { return &history{puts: map[string]map[uint64]uint64{}} }

func hashOf(v []byte) uint64 {
	h := fnv.New64a()
	h.Write(v)
	return h.Sum64()
}

func (h *history) put(key string, rev uint64, value []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.puts[key]
	if m == nil {
		m = map[uint64]uint64{}
		h.puts[key] = m
	}
	m[rev] = hashOf(value)
}

// check says whether value is what key was given at rev: known is false when
// the program never saw that put acknowledged (a put whose answer was lost).
func (h *history) check(key string, rev uint64, value []byte) (known, right bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sum, ok := h.puts[key][rev]
	return ok, ok && sum == hashOf(value)
}

// writer is the goroutine that puts, deletes and purges keys of the key
// space at a steady rate until paused.
type writer struct {
	kv   jetstream.KeyValue
	rng  *rand.Rand
	keys []string
	rate int
	hist *history

	mu        sync.Mutex
	cond      *sync.Cond
	wantPause bool
	idle      bool
	stopped   bool
	done      chan struct{}

	puts, deletes, purges, errs atomic.Int64
	lastErr                     atomic.Value // string
	counter                     atomic.Uint64
}

func newWriter(kv jetstream.KeyValue, seed uint64, nkeys, rate int, hist *history) *writer {
	w := &writer{kv: kv, rng: rand.New(rand.NewPCG(seed, 0x5eed)), rate: rate, hist: hist, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	for i := range nkeys {
		w.keys = append(w.keys, fmt.Sprintf("k.%04d", i))
	}
	w.wantPause = true // starts paused; resume starts it
	go w.loop()
	w.pause()
	return w
}

// value makes a value never written before: text mostly, sometimes bytes
// that are not UTF-8 (served as value_base64), rarely empty.
func (w *writer) value() []byte {
	n := w.counter.Add(1)
	switch r := w.rng.IntN(100); {
	case r < 1:
		return []byte{}
	case r < 11:
		v := []byte{0xff, 0xfe}
		v = strconv.AppendUint(v, n, 10)
		for range w.rng.IntN(64) {
			v = append(v, byte(w.rng.UintN(256)))
		}
		return v
	default:
		v := []byte("v" + strconv.FormatUint(n, 10) + "-")
		const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		for range 1 + w.rng.IntN(200) {
			v = append(v, alpha[w.rng.IntN(len(alpha))])
		}
		return v
	}
}

func (w *writer) loop() {
	defer close(w.done)
	interval := time.Second / time.Duration(max(w.rate, 1))
	next := time.Now()
	for {
		w.mu.Lock()
		for w.wantPause && !w.stopped {
			w.idle = true
			w.cond.Broadcast()
			w.cond.Wait()
		}
		w.idle = false
		if w.stopped {
			w.idle = true
			w.cond.Broadcast()
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		w.op()
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else if d < -time.Second {
			next = time.Now() // fell behind (an outage): do not burst
		}
	}
}

func (w *writer) op() {
	key := w.keys[w.rng.IntN(len(w.keys))]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var err error
	switch r := w.rng.IntN(100); {
	case r < 70:
		v := w.value()
		var rev uint64
		if rev, err = w.kv.Put(ctx, key, v); err == nil {
			w.hist.put(key, rev, v)
			w.puts.Add(1)
		}
	case r < 90:
		if err = w.kv.Delete(ctx, key); err == nil {
			w.deletes.Add(1)
		}
	default:
		if err = w.kv.Purge(ctx, key); err == nil {
			w.purges.Add(1)
		}
	}
	if err != nil {
		w.errs.Add(1)
		w.lastErr.Store(err.Error())
		time.Sleep(50 * time.Millisecond)
	}
}

// pause returns once no write is in flight.
func (w *writer) pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wantPause = true
	for !w.idle {
		w.cond.Wait()
	}
}

func (w *writer) resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wantPause = false
	w.cond.Broadcast()
}

func (w *writer) stop() {
	w.mu.Lock()
	w.stopped = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
}

func (w *writer) ops() int64 { return w.puts.Load() + w.deletes.Load() + w.purges.Load() }

// marker puts a new value under sentinelKey, retrying until NATS takes it
// (the server may be down or electing a leader), and returns its revision.
func marker(ctx context.Context, kv jetstream.KeyValue, hist *history, n int, wait time.Duration) (uint64, error) {
	deadline := time.Now().Add(wait)
	v := []byte(fmt.Sprintf("marker-%d-%d", n, time.Now().UnixNano()))
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rev, err := kv.Put(pctx, sentinelKey, v)
		cancel()
		if err == nil {
			hist.put(sentinelKey, rev, v)
			return rev, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("marker write not accepted within %v: %w", wait, err)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// liveReader reads random keys of every fold while the host runs and faults
// come and go. Any answer but 200 (with a value the key had at that
// revision), 404 or 503 is an error, as is a transport error.
type liveReader struct {
	h     *host
	folds []foldSpec
	keys  []string
	hist  *history
	rng   *rand.Rand

	enabled atomic.Bool
	cycle   atomic.Int64
	stopCh  chan struct{}
	done    chan struct{}

	mu         sync.Mutex
	reads      map[string]int
	errs       map[string]int
	unverified map[string]int
	statuses   map[string]map[int]int
	samples    map[string][]string
}

func newLiveReader(h *host, folds []foldSpec, keys []string, hist *history, seed uint64) *liveReader {
	r := &liveReader{h: h, folds: folds, keys: append(append([]string{}, keys...), sentinelKey), hist: hist,
		rng: rand.New(rand.NewPCG(seed, 0x7ead)), stopCh: make(chan struct{}), done: make(chan struct{}),
		reads: map[string]int{}, errs: map[string]int{}, unverified: map[string]int{},
		statuses: map[string]map[int]int{}, samples: map[string][]string{}}
	for _, f := range folds {
		r.statuses[f.name] = map[int]int{}
	}
	go r.loop()
	return r
}

func (r *liveReader) loop() {
	defer close(r.done)
	for i := 0; ; i++ {
		select {
		case <-r.stopCh:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if !r.enabled.Load() {
			continue
		}
		f := r.folds[i%len(r.folds)]
		key := r.keys[r.rng.IntN(len(r.keys))]
		if i%5 == 0 {
			key = sentinelKey
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		a := r.h.read(ctx, f.name, key)
		cancel()
		if !r.enabled.Load() {
			continue // the host was killed on purpose during this read
		}
		r.judge(f.name, key, a)
	}
}

func (r *liveReader) judge(fold, key string, a readAnswer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads[fold]++
	bad := ""
	switch {
	case a.err != nil:
		bad = "transport error: " + a.err.Error()
	case a.status == http.StatusOK:
		rev, err := strconv.ParseUint(a.revision, 10, 64)
		if err != nil {
			bad = fmt.Sprintf("200 with Slipstream-Revision %q", a.revision)
			break
		}
		known, right := r.hist.check(key, rev, a.body)
		switch {
		case !known:
			r.unverified[fold]++
		case !right:
			bad = fmt.Sprintf("200 rev %d with a value the key never had at that revision: %s", rev, short(a.body))
		}
	case a.status == http.StatusNotFound, a.status == http.StatusServiceUnavailable:
	default:
		bad = fmt.Sprintf("status %d: %s", a.status, short(a.body))
	}
	if a.err == nil {
		r.statuses[fold][a.status]++
	}
	if bad != "" {
		r.errs[fold]++
		if len(r.samples[fold]) < 10 {
			r.samples[fold] = append(r.samples[fold], fmt.Sprintf("cycle %d, %s, key %s: %s",
				r.cycle.Load(), time.Now().Format("15:04:05.000"), key, bad))
		}
	}
}

func (r *liveReader) stop() {
	close(r.stopCh)
	<-r.done
}
