package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/client"
	"github.com/slipstreamkv/slipstream/host/api"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/front"
	"github.com/valyala/fasthttp"
)

// maxReadsPerClient bounds a read phase by count as well as by time.
const maxReadsPerClient = 5_000_000

// apiServer is the host's HTTP API over one fold, on a loopback port,
// served as the service serves it (host/front).
type apiServer struct {
	srv  *front.Server
	addr string // host:port
	base string
	done chan error
}

// serveAPI serves the host's API over f on a free loopback port.
func serveAPI(f *fold.Fold) (*apiServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	routes := api.New([]*fold.Fold{f}, prometheus.NewRegistry(), api.Options{Producer: "bench"})
	a := &apiServer{
		srv:  front.New(front.Options{Read: routes.Read, HTTP: routes.HTTP}),
		addr: ln.Addr().String(),
		base: "http://" + ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { a.done <- a.srv.Serve(ln) }()
	return a, nil
}

// keyURL is the API address of a key of the bench's fold (keys need no
// escaping).
func (a *apiServer) keyURL(key string) string { return a.base + "/v1/folds/bench/keys/" + key }

// close shuts the server down and waits for Serve to return. A client
// still holding a connection mid-request past the shutdown's 5 seconds
// has it closed: the measurement is over, and that is not a failure of
// the run.
func (a *apiServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	if serr := <-a.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// pipelinedGet reads keys of a's fold as GET requests that the readers
// share over one connection, pipelined (fasthttp's PipelineClient): the
// way nats.go's readers share one connection for kv.Get.
func pipelinedGet(a *apiServer) func(ctx context.Context, key string) error {
	pc := &fasthttp.PipelineClient{Addr: a.addr, MaxConns: 1, MaxPendingRequests: 1024}
	return func(ctx context.Context, key string) error {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(a.keyURL(key))
		if err := pc.DoTimeout(req, resp, 10*time.Second); err != nil {
			return err
		}
		if resp.StatusCode() != http.StatusOK {
			return fmt.Errorf("GET %s: %d %s", key, resp.StatusCode(), resp.Body())
		}
		return checkValue(resp.Body())
	}
}

// httpClient keeps enough idle connections for n concurrent clients, so
// that every request reuses one (no ephemeral port churn).
func httpClient(n int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{MaxIdleConns: 2 * n, MaxIdleConnsPerHost: 2 * n, DisableCompression: true},
		Timeout:   10 * time.Second,
	}
}

// Targets of the read rows (issue 15): a key read served by the fold's read
// cache, through the API or the Go client, at least readRateTarget times
// the reads/s of kv.Get from NATS with the same clients, at a p99 no worse
// than kv.Get's.
const readRateTarget = 2.0

// cacheEntryOverhead is what the read cache counts for an entry beyond its
// key and value (entryOverhead in host/fold/cache.go): -read-hot keys must
// fit in fold.DefaultReadCache by that count.
const cacheEntryOverhead = 96

// hotBytes is what the read cache counts for n keys of the bench.
func hotBytes(n int) int64 { return int64(n) * int64(len(keyOf(0))+valueLen+cacheEntryOverhead) }

// keySet is what a read phase picks its keys from at random: the bucket's
// keys of the indexes in idx, or all of them when idx is nil.
type keySet struct {
	name string // for the logs: "hot", "uniform"
	idx  []int
	n    int // the bucket's keys, when idx is nil
}

func (s keySet) pick(rng *rand.Rand) string {
	if s.idx == nil {
		return keyOf(rng.IntN(s.n))
	}
	return keyOf(s.idx[rng.IntN(len(s.idx))])
}

// hotSet is -read-hot keys of the bucket chosen at random (the same in
// every run of the program).
func (b *bench) hotSet() keySet {
	n := min(b.o.readHot, b.o.keys)
	return keySet{name: "hot", idx: rand.New(rand.NewPCG(15, 15)).Perm(b.o.keys)[:n]}
}

// readResult is the outcome of one read phase.
type readResult struct {
	rate     float64
	p50, p99 time.Duration
	n        int
}

func (r readResult) String() string {
	return fmt.Sprintf("%s · p99 %s (p50 %s)", fmtRate(r.rate, "reads/s"), fmtMs(r.p99), fmtMs(r.p50))
}

// readPhase runs -read-clients goroutines that read random keys of set
// with get for -read-for.
func (b *bench) readPhase(ctx context.Context, label string, set keySet, get func(ctx context.Context, key string) error) (readResult, error) {
	o := b.o
	var res readResult
	err := labelled(ctx, label, func(ctx context.Context) error {
		lats := make([][]time.Duration, o.readClients)
		errs := make([]error, o.readClients)
		var wg sync.WaitGroup
		cpu0 := selfCPU()
		start := time.Now()
		deadline := start.Add(o.readFor)
		// A read that has not answered 10 s after the phase fails the run.
		ctx, cancel := context.WithDeadline(ctx, deadline.Add(10*time.Second))
		defer cancel()
		for c := range o.readClients {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(c), 7))
				l := make([]time.Duration, 0, 1<<14)
				for len(l) < maxReadsPerClient && time.Now().Before(deadline) {
					key := set.pick(rng)
					t := time.Now()
					if err := get(ctx, key); err != nil {
						errs[c] = fmt.Errorf("%s: read %s: %w", label, key, err)
						return
					}
					l = append(l, time.Since(t))
				}
				lats[c] = l
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		cpu := selfCPU() - cpu0
		if err := errors.Join(errs...); err != nil {
			return err
		}
		all := slices.Concat(lats...)
		if len(all) == 0 {
			return fmt.Errorf("%s: no read completed in %v", label, o.readFor)
		}
		slices.Sort(all)
		res = readResult{rate: float64(len(all)) / elapsed.Seconds(), p50: percentile(all, 0.5), p99: percentile(all, 0.99), n: len(all)}
		// The process's CPU per read: the readers and what serves them in
		// this process (the API and the fold, or the NATS server), not a
		// store plugin's.
		b.logf("  %-24s %d reads by %d clients in %v: %s; process CPU %.1f µs/read", label, len(all), o.readClients,
			elapsed.Round(time.Millisecond), res, float64(cpu.Microseconds())/float64(len(all)))
		return nil
	})
	return res, err
}

// rawGet is kv.Get from NATS, the raw read a node without a fold would
// make.
func rawGet(kv jetstream.KeyValue) func(ctx context.Context, key string) error {
	return func(ctx context.Context, key string) error {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return err
		}
		return checkValue(e.Value())
	}
}

func checkValue(v []byte) error {
	if len(v) != valueLen {
		return fmt.Errorf("value of %d bytes, want %d", len(v), valueLen)
	}
	return nil
}

// readPair is one round of a read row: the fold's phase and the kv.Get
// phase just before it, on the same keys.
type readPair struct {
	fold, raw readResult
	hits      float64 // share of the fold phase's reads the cache answered
}

// foldReads measures key reads of be's fold against kv.Get, in -runs
// rounds that interleave the variants: on the first backend, on a hot set
// of -read-hot keys that the read cache holds (warmed first),
// GET /v1/folds/{fold}/keys/{key} and client.Get, each after a kv.Get
// phase; then on every backend, uniform over all the keys (mostly misses
// once the keys outgrow the cache), the GET after a kv.Get phase.
func (b *bench) foldReads(ctx context.Context, be *backend, r *foldRun, a *apiServer) error {
	o := b.o
	kv, closeConn, err := b.rawKV(ctx, "raw-reads-"+be.name)
	if err != nil {
		return err
	}
	defer closeConn()
	hc := httpClient(o.readClients)
	defer hc.CloseIdleConnections()
	httpRead := func(ctx context.Context, key string) error {
		body, err := httpGet(ctx, hc, a.keyURL(key))
		if err != nil {
			return err
		}
		return checkValue(body)
	}
	// The Go client as an application makes it: its Gets share its
	// pipelined connections.
	cl, err := client.New(a.base)
	if err != nil {
		return err
	}
	clientRead := func(ctx context.Context, key string) error {
		e, _, err := cl.Get(ctx, "bench", key)
		if err != nil {
			return err
		}
		return checkValue(e.Value)
	}
	// The hot set on the first backend only: every read of it is a hit,
	// which does not touch the store.
	hot := b.hotSet()
	first := be == b.backends[0]
	if first {
		if err := b.warmCache(ctx, be, r, hot); err != nil {
			return err
		}
	}
	all := keySet{name: "uniform", n: o.keys}
	type variant struct {
		name string
		set  keySet
		get  func(ctx context.Context, key string) error
	}
	series := map[string][]readPair{}
	for i, sets := range [][]variant{
		{{"pipelined", hot, pipelinedGet(a)}, {"http", hot, httpRead}, {"client", hot, clientRead}},
		{{"http", all, httpRead}, {"client", all, clientRead}},
	} {
		if i == 0 && !first {
			continue
		}
		for round := 1; round <= o.runs; round++ {
			for _, v := range sets {
				name := fmt.Sprintf("%s-%s", v.set.name, v.name)
				raw, err := b.readPhase(ctx, fmt.Sprintf("raw-reads-%s-%s", v.set.name, be.name), v.set, rawGet(kv))
				if err != nil {
					return err
				}
				h0, m0 := cacheCounts(r)
				res, err := b.readPhase(ctx, fmt.Sprintf("reads-%s-%s", name, be.name), v.set, v.get)
				if err != nil {
					return err
				}
				h1, m1 := cacheCounts(r)
				p := readPair{fold: res, raw: raw, hits: (h1 - h0) / max(1, h1-h0+m1-m0)}
				b.logf("  %-24s round %d: %s of kv.Get's reads/s, p99 %s, cache hits %.1f%% (%d misses)",
					"reads-"+name+"-"+be.name, round, fmtRatio(res.rate/raw.rate), fmtDelta(res.p99-raw.p99), 100*p.hits, int(m1-m0))
				series[name] = append(series[name], p)
			}
		}
	}
	b.readRows(be, hot, series)
	return nil
}

// warmCache reads every key of set once through the fold (fold.Lookup,
// the API's read), so that the read cache holds them, and checks that it
// does: reading them again must find every one in the cache.
func (b *bench) warmCache(ctx context.Context, be *backend, r *foldRun, set keySet) error {
	return labelled(ctx, "read-warm-"+be.name, func(ctx context.Context) error {
		start := time.Now()
		errs := make([]error, b.o.readClients)
		var wg sync.WaitGroup
		for c := range b.o.readClients {
			wg.Go(func() {
				for i := c; i < len(set.idx); i += b.o.readClients {
					if _, _, err := r.f.Lookup(ctx, []byte(keyOf(set.idx[i]))); err != nil {
						errs[c] = fmt.Errorf("warming the read cache: %s: %w", keyOf(set.idx[i]), err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		took := time.Since(start)
		h0, m0 := cacheCounts(r)
		for _, i := range set.idx {
			if _, _, err := r.f.Lookup(ctx, []byte(keyOf(i))); err != nil {
				return fmt.Errorf("reading the warmed cache: %s: %w", keyOf(i), err)
			}
		}
		h1, m1 := cacheCounts(r)
		bytes, _ := metricValue(r.reg, "slipstream_fold_read_cache_bytes")
		b.logf("  %-24s %d keys read in %v; the cache counts %.1f MiB; read again: %d hits, %d misses",
			"read-warm-"+be.name, len(set.idx), took.Round(time.Millisecond), bytes/(1<<20), int(h1-h0), int(m1-m0))
		if m1 > m0 {
			return fmt.Errorf("the read cache of %s missed %d of the %d hot keys just read (%.1f MiB counted): they do not stay in it",
				be.name, int(m1-m0), len(set.idx), bytes/(1<<20))
		}
		return nil
	})
}

// cacheCounts reads the fold's read cache hits and misses so far.
func cacheCounts(r *foldRun) (hits, misses float64) {
	hits, _ = metricValue(r.reg, "slipstream_fold_read_cache_hits_total")
	misses, _ = metricValue(r.reg, "slipstream_fold_read_cache_misses_total")
	return hits, misses
}

// readRows adds the read rows of be: each the median of its rounds against
// the median of the kv.Get phases of the same rounds, with the spreads in
// brackets (table.go).
func (b *bench) readRows(be *backend, hot keySet, series map[string][]readPair) {
	o := b.o
	for _, v := range []struct {
		name, what string
		target     bool
	}{
		{"hot-pipelined", "GET /v1/folds/{fold}/keys/{key} pipelined on one shared connection", true},
		{"hot-http", "GET /v1/folds/{fold}/keys/{key}, a connection per client (net/http)", false},
		{"hot-client", "client.Get (Go client)", true},
		{"uniform-http", "GET /v1/folds/{fold}/keys/{key}, a connection per client (net/http)", false},
		{"uniform-client", "client.Get (Go client)", false},
	} {
		ps := series[v.name]
		if len(ps) == 0 {
			continue
		}
		var keys string
		if strings.HasPrefix(v.name, "hot") {
			keys = fmt.Sprintf("hot set of %s random keys (%.0f MiB in the cache)", fmtCount(len(hot.idx)), float64(hotBytes(len(hot.idx)))/(1<<20))
		} else {
			keys = fmt.Sprintf("uniform over all %s keys (miss path)", fmtCount(o.keys))
		}
		col := func(get func(p readPair) float64) []float64 {
			out := make([]float64, len(ps))
			for i, p := range ps {
				out[i] = get(p)
			}
			return out
		}
		rates := col(func(p readPair) float64 { return p.fold.rate })
		p99s := col(func(p readPair) float64 { return float64(p.fold.p99) })
		rawRates := col(func(p readPair) float64 { return p.raw.rate })
		rawP99s := col(func(p readPair) float64 { return float64(p.raw.p99) })
		rate, p99 := medianOf(rates), medianOf(p99s)
		rawRate, rawP99 := medianOf(rawRates), medianOf(rawP99s)
		ratio, dp99 := rate/rawRate, p99-rawP99
		hits := medianOf(col(func(p readPair) float64 { return p.hits }))
		rw := row{
			group: groupReads,
			scenario: fmt.Sprintf("%s → %s, %d clients, %s, cache hits %.0f%%, %v phases",
				v.what, be.name, o.readClients, keys, 100*hits, o.readFor),
			value: fmt.Sprintf("%s%s · p99 %s%s", fmtRate(rate, "reads/s"), spread(rates, rateOf),
				fmtMs(time.Duration(p99)), rangeOf(p99s, msOf)),
			baseline: fmt.Sprintf("%s%s · p99 %s%s kv.Get, same keys", fmtRate(rawRate, "reads/s"), spread(rawRates, rateOf),
				fmtMs(time.Duration(rawP99)), rangeOf(rawP99s, msOf)),
			ratio: fmt.Sprintf("%s%s · p99 %s%s", fmtRatio(ratio), rangeOf(pairwise(rates, rawRates, div), ratioOf),
				fmtDelta(time.Duration(dp99)), rangeOf(pairwise(p99s, rawP99s, sub), deltaOf)),
			target: "—", result: "—",
		}
		if v.target {
			rw.target = fmt.Sprintf("≥ %.0f× · p99 ≤ raw", readRateTarget)
			rw.result = verdicts(map[string]bool{"reads/s": ratio >= readRateTarget, "p99": dp99 <= 0})
		}
		b.add(rw)
	}
}

// verdicts is met when every target is, else MISSED with the missed ones.
func verdicts(met map[string]bool) string {
	var missed []string
	for name, ok := range met {
		if !ok {
			missed = append(missed, name)
		}
	}
	if len(missed) == 0 {
		return "met"
	}
	slices.Sort(missed)
	return "MISSED (" + strings.Join(missed, ", ") + ")"
}

func msOf(ns float64) string { return fmt.Sprintf("%.2f", ns/float64(time.Millisecond)) }

func deltaOf(ns float64) string {
	return strings.TrimSuffix(fmtDelta(time.Duration(ns)), " ms")
}

func fmtRatio(f float64) string { return fmt.Sprintf("%.2f×", f) }
