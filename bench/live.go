package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Targets of the live rows.
const (
	liveP99Slack     = 2 * time.Millisecond // slipstream p99 <= raw p99 + this
	throughputTarget = 0.70                 // slipstream rate / raw watcher rate
)

// rawLiveResult is the raw watcher's side of the live rows.
type rawLiveResult struct {
	p50, p99 time.Duration
	rate     float64
}

// probe pairs each put with the moment an observer first saw it (or a later
// put of the same key, which implies it).
type probe struct {
	base time.Time
	t0   []atomic.Int64 // ns since base + 1 at which put i started; 0: not yet
	lat  []time.Duration
	rev  []uint64 // the revision of put i, once made
	next int      // the observer's first unresolved put
	lost int      // puts seen before their start was recorded (must stay 0)
	// made is how many puts the phase makes: len(t0), until a phase that
	// ends early sets what it made.
	made atomic.Int64
}

func newProbe(n int) *probe {
	p := &probe{base: time.Now(), t0: make([]atomic.Int64, n), lat: make([]time.Duration, n), rev: make([]uint64, n)}
	p.made.Store(int64(n))
	return p
}

// total is the number of puts the observer waits for.
func (p *probe) total() int { return int(p.made.Load()) }

// started is when put i started, relative to base; false if it was not made.
func (p *probe) started(i int) (time.Duration, bool) {
	t := p.t0[i].Load()
	return time.Duration(t - 1), t > 0
}

func (p *probe) put(i int) { p.t0[i].Store(int64(time.Since(p.base)) + 1) }

// see resolves every put up to i. Called by the observer only.
func (p *probe) see(i int) {
	now := time.Since(p.base)
	for p.next <= i && p.next < len(p.t0) {
		if t := p.t0[p.next].Load(); t > 0 {
			p.lat[p.next] = now - time.Duration(t-1)
		} else {
			p.lost++
		}
		p.next++
	}
}

// observer watches for the puts of a latency phase until all p.total() are
// resolved or ctx ends.
type observer func(ctx context.Context, p *probe) error

// latencyPhase puts indexed values to key hot at -live-rate for -live-for
// (after half a second of warm-up that is not counted) and returns the
// put-to-observed latencies sorted.
func (b *bench) latencyPhase(ctx context.Context, name, hot string, observe observer) ([]time.Duration, error) {
	o := b.o
	warm := b.warmPuts()
	p, err := b.putPhase(ctx, hot, observe, warm+max(1, int(float64(o.liveRate)*o.liveFor.Seconds())), nil)
	if err != nil {
		return nil, err
	}
	if err := b.dumpLatencies(name, p); err != nil {
		return nil, err
	}
	lat := slices.Clone(p.lat[warm:])
	slices.Sort(lat)
	return lat, nil
}

// dumpLatencies writes each put of p to a CSV file in -latency-dump (if
// set): when it started (Unix ns) and how long it took to be observed, so
// that a phase's slow puts can be laid beside other logs of the run (a
// plugin's at debug level, GODEBUG=gctrace=1). Warm-up puts are included.
func (b *bench) dumpLatencies(name string, p *probe) error {
	if b.o.latencyDump == "" {
		return nil
	}
	b.dumps++
	path := filepath.Join(b.o.latencyDump, fmt.Sprintf("%03d-%s.csv", b.dumps, name))
	var buf bytes.Buffer
	buf.WriteString("start_unix_ns,latency_ns,revision\n")
	for i := range p.total() {
		if t, ok := p.started(i); ok {
			fmt.Fprintf(&buf, "%d,%d,%d\n", p.base.Add(t).UnixNano(), p.lat[i], p.rev[i])
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("-latency-dump: %w", err)
	}
	return nil
}

// warmPuts is the number of puts of a phase's warm-up, half a second's.
func (b *bench) warmPuts() int { return max(1, b.o.liveRate/2) }

// putPhase puts indexed values to key hot at -live-rate, at most limit of
// them, while more (if not nil) returns true before each, and returns the
// probe once observe has seen the last put made.
func (b *bench) putPhase(ctx context.Context, hot string, observe observer, limit int, more func(i int) bool) (*probe, error) {
	kv, err := b.pub.js.KeyValue(ctx, bucketMain)
	if err != nil {
		return nil, err
	}
	p := newProbe(limit)
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	obsDone := make(chan error, 1)
	go func() { obsDone <- observe(octx, p) }()
	interval := time.Second / time.Duration(b.o.liveRate)
	start := time.Now()
	for i := range limit {
		if more != nil && !more(i) {
			p.made.Store(int64(i))
			break
		}
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		p.put(i)
		rev, err := kv.Put(ctx, hot, b.vals.indexed(i))
		p.rev[i] = rev
		if err != nil {
			cancel()
			return nil, errors.Join(fmt.Errorf("put %d: %w", i, err), <-obsDone)
		}
	}
	select {
	case err := <-obsDone:
		if err != nil {
			return nil, err
		}
	case <-time.After(30 * time.Second):
		cancel()
		return nil, errors.Join(errors.New("observer did not see the last put within 30s"), <-obsDone)
	}
	if p.lost > 0 {
		return nil, fmt.Errorf("observer saw %d puts before they were made: the probe is broken", p.lost)
	}
	return p, nil
}

// watchObserver observes through a raw nats.go watcher of the key.
func watchObserver(w jetstream.KeyWatcher) observer {
	return func(ctx context.Context, p *probe) error {
		for p.next < p.total() {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return errors.New("raw watcher closed")
				}
				if e != nil {
					p.see(parseIndex(e.Value()))
				}
			case <-ctx.Done():
				return fmt.Errorf("raw watcher saw %d of %d puts: %w", p.next, p.total(), ctx.Err())
			}
		}
		return nil
	}
}

// pollObserver observes by calling get in a loop, pausing -poll between
// calls.
func (b *bench) pollObserver(what string, get func(ctx context.Context) ([]byte, error)) observer {
	return func(ctx context.Context, p *probe) error {
		for p.next < p.total() {
			if ctx.Err() != nil {
				return fmt.Errorf("%s saw %d of %d puts: %w", what, p.next, p.total(), ctx.Err())
			}
			v, err := get(ctx)
			switch {
			case err == nil:
				p.see(parseIndex(v))
			case ctx.Err() != nil:
			default:
				return fmt.Errorf("%s: %w", what, err)
			}
			if b.o.poll > 0 {
				time.Sleep(b.o.poll)
			}
		}
		return nil
	}
}

// waitObserver observes through the API as an app waiting for a change
// does (read-your-writes): GET of the key with ?min_cursor= one past the
// cursor of the previous answer, which the fold answers as soon as it has
// committed that far. No polling: one request per change the fold
// commits, or fewer when it commits several at once.
func waitObserver(c *http.Client, keyURL string) observer {
	return func(ctx context.Context, p *probe) error {
		var cursor uint64
		for p.next < p.total() {
			url := keyURL
			if cursor > 0 {
				url = fmt.Sprintf("%s?min_cursor=%d&wait=2s", keyURL, cursor+1)
			}
			v, at, status, err := httpGetAt(ctx, c, url)
			switch {
			case ctx.Err() != nil:
				return fmt.Errorf("HTTP GET ?min_cursor saw %d of %d puts: %w", p.next, p.total(), ctx.Err())
			case err != nil:
				return fmt.Errorf("HTTP GET ?min_cursor: %w", err)
			case status == http.StatusGatewayTimeout: // nothing committed within the wait
			case status != http.StatusOK:
				return fmt.Errorf("GET %s: status %d: %s", url, status, v)
			default:
				p.see(parseIndex(v))
			}
			cursor = max(cursor, at)
		}
		return nil
	}
}

// httpGetAt is httpGet that also returns the Slipstream-Cursor of the
// answer and its status, leaving a status other than 200 to the caller.
func httpGetAt(ctx context.Context, c *http.Client, url string) (body []byte, cursor uint64, status int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, 0, err
	}
	defer resp.Body.Close()
	if body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20)); err != nil {
		return nil, 0, 0, err
	}
	cursor, _ = strconv.ParseUint(resp.Header.Get("Slipstream-Cursor"), 10, 64)
	return body, cursor, resp.StatusCode, nil
}

// httpGet reads a key through the API; it returns the body of a 200.
func httpGet(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	body, _, status, err := httpGetAt(ctx, c, url)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("GET %s: status %d: %s", url, status, body)
	}
	return body, err
}

// foldGetObserver observes key by polling the fold directly (fold.Get),
// which separates the fold's lag from the API's.
func (b *bench) foldGetObserver(f *fold.Fold, key string) observer {
	return b.pollObserver("fold.Get", func(ctx context.Context) ([]byte, error) {
		e, err := f.Get(ctx, []byte(key))
		if errors.Is(err, sdk.ErrNotFound) {
			return nil, nil
		}
		return e.Value, err
	})
}

// hotKey is a distinct existing key for each live phase, so that no phase
// sees the values of another.
func (b *bench) hotKey() string {
	b.phase++
	return keyOf(b.phase % b.o.keys)
}

// rawLive measures the raw watcher, on a fresh connection, with no fold
// running: put-to-receive latency and throughput.
func (b *bench) rawLive(ctx context.Context) (rawLiveResult, error) {
	var res rawLiveResult
	err := labelled(ctx, "raw-live", func(ctx context.Context) error {
		kv, closeConn, err := b.rawKV(ctx, "raw-live")
		if err != nil {
			return err
		}
		defer closeConn()
		hot := b.hotKey()
		w, err := kv.Watch(ctx, hot, jetstream.UpdatesOnly())
		if err != nil {
			return err
		}
		lat, err := b.latencyPhase(ctx, "raw-live", hot, watchObserver(w))
		_ = w.Stop()
		if err != nil {
			return fmt.Errorf("raw live latency: %w", err)
		}
		res.p50, res.p99 = percentile(lat, 0.50), percentile(lat, 0.99)
		b.logf("  %-18s put→receive p50 %s p99 %s max %s (%d puts)", "raw-live", fmtMs(res.p50), fmtMs(res.p99),
			fmtMs(lat[len(lat)-1]), len(lat))
		d, err := b.rawThroughput(ctx, kv)
		if err != nil {
			return err
		}
		res.rate = float64(b.o.liveUpdates) / d.Seconds()
		b.logf("  %-18s %d overwrites received in %v (%s)", "raw-throughput", b.o.liveUpdates,
			d.Round(time.Millisecond), fmtRate(res.rate, "keys/s"))
		return nil
	})
	return res, err
}

// rawThroughput publishes -live-updates overwrites as fast as possible and
// times, from the first publish, a raw watcher's receipt of the last. It
// waits for the last revision, not for a count: with History 1 an overwrite
// removes the key's previous message, so a watcher that is behind never
// receives a message overwritten before it got there (neither does the
// fold, which is timed the same way).
func (b *bench) rawThroughput(ctx context.Context, kv jetstream.KeyValue) (time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, b.o.wait)
	defer cancel()
	w, err := kv.WatchAll(wctx, jetstream.UpdatesOnly())
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	// The watcher's consumer may start after WatchAll returns: wait until
	// it delivers a put, so that it cannot miss the first overwrites.
	if err := b.overwrite(wctx, 1); err != nil {
		return 0, err
	}
	select {
	case <-w.Updates():
	case <-time.After(10 * time.Second):
		return 0, errors.New("raw watcher delivered nothing within 10s")
	}
	var (
		mu      sync.Mutex
		highest uint64    // highest revision received
		at      time.Time // when it was received
		target  uint64    = math.MaxUint64
		reached           = make(chan struct{})
		closed  bool
	)
	check := func() { // with mu held
		if highest >= target && !closed {
			closed = true
			close(reached)
		}
	}
	go func() {
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					mu.Lock()
					highest, at = e.Revision(), time.Now()
					check()
					mu.Unlock()
				}
			case <-wctx.Done():
				return
			}
		}
	}()
	start := time.Now()
	if err := b.overwrite(wctx, b.o.liveUpdates); err != nil {
		return 0, err
	}
	last, err := b.lastSeq(wctx)
	if err != nil {
		return 0, err
	}
	mu.Lock()
	target = last
	check()
	mu.Unlock()
	select {
	case <-reached:
	case <-wctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return 0, fmt.Errorf("raw watcher at revision %d, want %d: %w", highest, last, wctx.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	return at.Sub(start), nil
}

// liveRound is one round of the live rows of a backend: the raw
// watcher's phases, then the fold's.
type liveRound struct {
	raw                rawLiveResult
	http50, http99     time.Duration
	direct50, direct99 time.Duration // in the first round only
	direct             bool
	// The HTTP latency with the store linked into this process, in the
	// first round only.
	inproc50, inproc99 time.Duration
	rate               float64
}

// foldLive measures the fold: put-to-visible latency through the HTTP API
// (and, with direct, through the fold directly), and throughput.
func (b *bench) foldLive(ctx context.Context, be *backend, r *foldRun, api *apiServer, direct bool) (liveRound, error) {
	var res liveRound
	client := httpClient(2)
	defer client.CloseIdleConnections()
	hot := b.hotKey()
	s0 := r.applyStats()
	var httpLat, directLat []time.Duration
	err := labelled(ctx, "live-http-"+be.name, func(ctx context.Context) (err error) {
		httpLat, err = b.latencyPhase(ctx, "live-http-"+be.name, hot, waitObserver(client, api.keyURL(hot)))
		return err
	})
	if err != nil {
		return res, fmt.Errorf("%s live latency via HTTP: %w", be.name, err)
	}
	s1 := r.applyStats()
	b.logLatency(be, "HTTP GET ?min_cursor", httpLat, s1.since(s0))
	res.http50, res.http99 = percentile(httpLat, 0.50), percentile(httpLat, 0.99)
	if direct {
		hot = b.hotKey()
		err = labelled(ctx, "live-direct-"+be.name, func(ctx context.Context) (err error) {
			directLat, err = b.latencyPhase(ctx, "live-direct-"+be.name, hot, b.foldGetObserver(r.f, hot))
			return err
		})
		if err != nil {
			return res, fmt.Errorf("%s live latency via fold.Get: %w", be.name, err)
		}
		s2 := r.applyStats()
		b.logLatency(be, "fold.Get", directLat, s2.since(s1))
		res.direct, res.direct50, res.direct99 = true, percentile(directLat, 0.50), percentile(directLat, 0.99)
		s1 = s2
	}
	d, err := b.foldThroughput(ctx, r)
	if err != nil {
		return res, fmt.Errorf("%s live throughput: %w", be.name, err)
	}
	res.rate = float64(b.o.liveUpdates) / d.Seconds()
	b.logf("  %-18s %d overwrites applied in %v (%s) [%s]", "throughput-"+be.name, b.o.liveUpdates,
		d.Round(time.Millisecond), fmtRate(res.rate, "keys/s"), r.applyStats().since(s1))
	return res, nil
}

// inProcessLatency starts be's fold with its store linked into this
// process and measures its put-to-visible latency through the HTTP API.
func (b *bench) inProcessLatency(ctx context.Context, be *backend) (p50, p99 time.Duration, err error) {
	f, err := b.startFollowingIn(ctx, be, inProcess)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, f.stop()) }()
	client := httpClient(2)
	defer client.CloseIdleConnections()
	hot := b.hotKey()
	s0 := f.r.applyStats()
	var lat []time.Duration
	err = labelled(ctx, "live-inproc-"+be.name, func(ctx context.Context) (err error) {
		lat, err = b.latencyPhase(ctx, "live-inproc-"+be.name, hot, waitObserver(client, f.api.keyURL(hot)))
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("%s live latency in process via HTTP: %w", be.name, err)
	}
	b.logLatency(be, "HTTP GET ?min_cursor, store in process", lat, f.r.applyStats().since(s0))
	return percentile(lat, 0.50), percentile(lat, 0.99), nil
}

func (b *bench) logLatency(be *backend, via string, lat []time.Duration, stats string) {
	b.logf("  %-18s put→visible via %s p50 %s p99 %s max %s (%d puts) [%s]", "live-"+be.name, via,
		fmtMs(percentile(lat, 0.50)), fmtMs(percentile(lat, 0.99)), fmtMs(lat[len(lat)-1]), len(lat), stats)
}

// liveRows adds the live rows of be from its rounds: medians of the fold's
// figures against medians of the raw watcher's in the same rounds.
func (b *bench) liveRows(be *backend, rounds []liveRound) {
	col := func(get func(l liveRound) float64) []float64 {
		out := make([]float64, len(rounds))
		for i, l := range rounds {
			out[i] = get(l)
		}
		return out
	}
	latCell := func(p99, p50 []float64) string {
		return fmt.Sprintf("%s (%s)%s", fmtMs(time.Duration(medianOf(p99))), fmtMs(time.Duration(medianOf(p50))), spread(p99, msOf))
	}
	raw99 := col(func(l liveRound) float64 { return float64(l.raw.p99) })
	raw50 := col(func(l liveRound) float64 { return float64(l.raw.p50) })
	http99 := col(func(l liveRound) float64 { return float64(l.http99) })
	http50 := col(func(l liveRound) float64 { return float64(l.http50) })
	diff := medianOf(http99) - medianOf(raw99)
	b.add(row{
		group:    groupLive,
		scenario: fmt.Sprintf("put→visible via HTTP GET ?min_cursor (blocking), %s, %d puts/s for %v: p99 (p50)", be.name, b.o.liveRate, b.o.liveFor),
		value:    latCell(http99, http50),
		baseline: latCell(raw99, raw50) + " watcher receive",
		ratio:    fmtDelta(time.Duration(diff)) + rangeOf(pairwise(http99, raw99, sub), deltaOf),
		target:   "≤ raw + 2 ms", result: verdict(time.Duration(diff) <= liveP99Slack),
	})
	// Reference rows of the first round, against its raw watcher.
	firstRound := func(scenario string, p99, p50 time.Duration) {
		raw := rounds[0].raw
		b.add(row{
			group:    groupLive,
			scenario: fmt.Sprintf("%s, %d puts/s for %v: p99 (p50); the first round only", scenario, b.o.liveRate, b.o.liveFor),
			value:    fmt.Sprintf("%s (%s) [n=1]", fmtMs(p99), fmtMs(p50)),
			baseline: fmt.Sprintf("%s (%s) [n=1] watcher receive, same round", fmtMs(raw.p99), fmtMs(raw.p50)),
			ratio:    fmtDelta(p99 - raw.p99), target: "—", result: "—",
		})
	}
	if l := rounds[0]; l.direct {
		firstRound("put→visible via fold.Get, "+be.name, l.direct99, l.direct50)
	}
	if l := rounds[0]; l.inproc99 > 0 {
		firstRound("reference: put→visible via HTTP GET ?min_cursor, "+be.name+" linked in-process (no plugin process)", l.inproc99, l.inproc50)
	}
	rate := col(func(l liveRound) float64 { return l.rate })
	rawRate := col(func(l liveRound) float64 { return l.raw.rate })
	ratio := medianOf(rate) / medianOf(rawRate)
	b.add(row{
		group:    groupLive,
		scenario: fmt.Sprintf("live throughput: %s overwrites (PublishAsync) → %s, to last applied", fmtCount(b.o.liveUpdates), be.name),
		value:    fmtRate(medianOf(rate), "keys/s") + spread(rate, rateOf),
		baseline: fmtRate(medianOf(rawRate), "keys/s") + spread(rawRate, rateOf) + " (watcher)",
		ratio:    pctOf(ratio) + rangeOf(pairwise(rate, rawRate, div), pctOf),
		target:   fmt.Sprintf("≥ %.0f%%", throughputTarget*100),
		result:   verdict(ratio >= throughputTarget),
	})
}

// foldThroughput publishes -live-updates overwrites as fast as possible and
// times, from the first publish, the fold committing the last.
func (b *bench) foldThroughput(ctx context.Context, r *foldRun) (time.Duration, error) {
	start := time.Now()
	if err := b.overwrite(ctx, b.o.liveUpdates); err != nil {
		return 0, err
	}
	target, err := b.lastSeq(ctx)
	if err != nil {
		return 0, err
	}
	deadline := start.Add(b.o.wait)
	for time.Now().Before(deadline) {
		if r.cursor() >= target {
			return time.Since(start), nil
		}
		select {
		case <-r.done:
			return 0, fmt.Errorf("fold stopped: %v", r.err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return 0, fmt.Errorf("cursor %d has not reached %d after %v", r.cursor(), target, b.o.wait)
}
