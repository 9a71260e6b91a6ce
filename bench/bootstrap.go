package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/slipstreamkv/slipstream/host/chain"
	"github.com/slipstreamkv/slipstream/host/fold"
)

// bootstrapTargets are the targets (issue 17: at least 60% for
// both): the share of the raw counting watcher's rate a bootstrap through
// each plugin must reach.
var bootstrapTargets = map[string]float64{"pebble": 0.60, "sqlite": 0.60}

// minRounds is the fewest rounds -budget leaves of -runs: a row that
// decides a target is a median of at least this many runs.
const minRounds = 3

// Targets of the plugin boundary rows.
const (
	pluginTarget = 0.80 // plugin rate / in-process rate
	wasmTarget   = 0.90 // with a keep-all WASM transform / without
)

// bootstraps runs the bootstrap rounds: in each round the raw baselines, a
// cold bootstrap through each plugin followed, for the resume group, by a
// restart of that fold after -resume-updates overwrites (its baseline is
// the round's cold bootstrap) and, for the boundary group, a bootstrap in
// process and one with a WASM transform. Rounds interleave the variants so
// that load from elsewhere on a shared machine spreads over all of them;
// -budget may end them early, but not before minRounds. When keep is set,
// the last round's plugin folds stay for the live, read and artifact
// groups.
func (b *bench) bootstraps(ctx context.Context, keep bool) error {
	o := b.o
	runs := o.runs
	if !o.has("bootstrap") && !o.has("boundary") && !o.has("resume") {
		runs = 1 // only to make the folds the other groups need
	}
	var wasm *chain.Transform
	wasmBE := b.backends[0]
	if o.has("boundary") {
		path, err := b.keepAllModule(ctx)
		if err != nil {
			return err
		}
		if wasm, err = newWASM(ctx, path, filepath.Join(b.dir, "wasm-cache")); err != nil {
			return fmt.Errorf("keep-all module %s: %w", path, err)
		}
		defer wasm.Close(context.Background())
		b.logf("WASM row: keep-all module %s on %s", path, wasmBE.name)
	}
	series := map[string][]time.Duration{}
	record := func(name string, d time.Duration) { series[name] = append(series[name], d) }
	for r := 1; r <= runs; r++ {
		roundStart := time.Now()
		b.logf("bootstrap round %d of %d (%d keys)", r, runs, o.keys)
		if o.has("bootstrap") {
			// The Go map reference has no target: the first round only.
			variants := []bool{false}
			if r == 1 {
				variants = append(variants, true)
			}
			for _, fill := range variants {
				d, err := b.rawBootstrap(ctx, fill)
				if err != nil {
					return err
				}
				record(rawName(fill), d)
			}
		}
		for _, be := range b.backends {
			dir := b.foldDir(be.name, "plugin", r)
			d, err := b.coldBootstrap(ctx, "bootstrap-"+be.name, be, viaPlugin, dir, nil)
			if err != nil {
				return err
			}
			record("plugin/"+be.name, d)
			if o.has("resume") {
				if d, err = b.resumeOnce(ctx, be, dir); err != nil {
					return err
				}
				record("resume/"+be.name, d)
			}
			// The newest plugin fold is kept for the later groups; the
			// one it replaces goes.
			if old, ok := b.foldDirs[be.name]; ok {
				if err := os.RemoveAll(old); err != nil {
					return err
				}
			}
			if keep {
				b.foldDirs[be.name] = dir
			} else if err := os.RemoveAll(dir); err != nil {
				return err
			}
			if !o.has("boundary") {
				continue
			}
			dir = b.foldDir(be.name, "inproc", r)
			if d, err = b.coldBootstrap(ctx, "inproc-"+be.name, be, inProcess, dir, nil); err != nil {
				return err
			}
			record("inproc/"+be.name, d)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		if wasm != nil {
			dir := b.foldDir(wasmBE.name, "wasm", r)
			d, err := b.coldBootstrap(ctx, "wasm-"+wasmBE.name, wasmBE, viaPlugin, dir, wasm)
			if err != nil {
				return err
			}
			record("wasm/"+wasmBE.name, d)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		if r < runs && r >= minRounds && !b.roomForRound(time.Since(roundStart), series) {
			b.logf("budget: %v would be exceeded by another round; stopping after %d of %d rounds", o.budget, r, runs)
			break
		}
	}
	b.rounds = len(series["plugin/"+wasmBE.name])
	b.bootstrapMedian = median(series["plugin/"+b.backends[0].name])
	b.bootstrapRows(series, wasmBE)
	if o.has("resume") {
		b.resumeRows(series)
	}
	return nil
}

// roomForRound reports whether another bootstrap round, as long as the last
// one, still leaves time for the groups after it within -budget. Those are
// estimated from their phases: -runs rounds of each, the live group's
// throughput phases at about 20k keys/s, the memory group's bootstraps and
// the artifact group's exports and imports at about a bootstrap each.
func (b *bench) roomForRound(last time.Duration, series map[string][]time.Duration) bool {
	o := b.o
	if o.budget == 0 {
		return true
	}
	runs := time.Duration(o.runs)
	boot := median(series["plugin/"+b.backends[0].name])
	rest := time.Minute
	if o.has("live") {
		phase := o.liveFor + 1500*time.Millisecond
		thr := time.Duration(o.liveUpdates) * time.Second / 20_000
		rest += time.Duration(len(b.backends)) * (phase + runs*(2*phase+2*thr+5*time.Second))
	}
	if o.has("reads") {
		// The cache's warm-up and -runs rounds of four phases on the first
		// backend, of two on each.
		phases := runs * time.Duration(4+2*len(b.backends))
		rest += 15*time.Second + phases*(o.readFor+200*time.Millisecond)
	}
	if o.has("changes") {
		// On the first backend: a raw phase and a slipstream phase a round.
		phase := time.Duration(changeCount(o)) * time.Second / time.Duration(o.changeRate)
		rest += 2 * runs * (phase + 3*time.Second)
	}
	if o.has("memory") {
		rest += runs * 2 * boot
	}
	if o.has("artifact") {
		art := time.Duration(b.artifactRuns())
		raw := median(series["raw-count"])
		for _, be := range b.backends {
			rest += art * (raw + o.liveFor + 2*median(series["plugin/"+be.name]))
		}
		rest += art*raw + boot
	}
	return time.Since(b.started)+last+rest <= o.budget
}

func rawName(fill bool) string {
	if fill {
		return "raw-map"
	}
	return "raw-count"
}

func (b *bench) foldDir(be, kind string, round int) string {
	return filepath.Join(b.dir, "folds", fmt.Sprintf("%s-%s-%d", be, kind, round))
}

// bootstrapRows adds the rows of the bootstrap and boundary groups: each
// the median of the rounds' rates against the median of its baseline's in
// the same rounds.
func (b *bench) bootstrapRows(series map[string][]time.Duration, wasmBE *backend) {
	n := float64(b.o.keys)
	rates := func(name string) []float64 {
		out := make([]float64, len(series[name]))
		for i, d := range series[name] {
			out[i] = n / d.Seconds()
		}
		return out
	}
	cell := func(rs []float64, what string) string {
		m, sp := medSpread(rs, rateOf)
		return fmtRate(m, "keys/s") + sp + what
	}
	// compare is the ratio of the medians and the range of the rounds'
	// ratios.
	compare := func(x, y []float64) (float64, string) {
		r := medianOf(x) / medianOf(y)
		return r, pctOf(r) + rangeOf(pairwise(x, y, div), pctOf)
	}
	if b.o.has("bootstrap") {
		count := rates("raw-count")
		for _, be := range b.backends {
			want := bootstrapTargets[be.name]
			got := rates("plugin/" + be.name)
			r, ratio := compare(got, count)
			b.add(row{
				group:    groupBootstrap,
				scenario: fmt.Sprintf("bootstrap %s keys → %s (plugin), Run to Ready", fmtCount(b.o.keys), be.name),
				value:    cell(got, ""), baseline: cell(count, " (WatchAll, count)"),
				ratio: ratio, target: fmt.Sprintf("≥ %.0f%%", want*100), result: verdict(r >= want),
			})
		}
		m := rates("raw-map")
		_, ratio := compare(m, count[:len(m)])
		b.add(row{
			group:    groupBootstrap,
			scenario: "reference: raw WatchAll → Go map (the first round only)",
			value:    cell(m, ""), baseline: cell(count[:len(m)], " (WatchAll, count, same round)"),
			ratio: ratio, target: "—", result: "—",
		})
	}
	if !b.o.has("boundary") {
		return
	}
	for _, be := range b.backends {
		p, in := rates("plugin/"+be.name), rates("inproc/"+be.name)
		r, ratio := compare(p, in)
		b.add(row{
			group:    groupBoundary,
			scenario: fmt.Sprintf("bootstrap → %s: plugin process vs linked in-process", be.name),
			value:    cell(p, ""), baseline: cell(in, " (in-process)"),
			ratio: ratio, target: fmt.Sprintf("≥ %.0f%%", pluginTarget*100), result: verdict(r >= pluginTarget),
		})
	}
	w, p := rates("wasm/"+wasmBE.name), rates("plugin/"+wasmBE.name)
	r, ratio := compare(w, p)
	b.add(row{
		group:    groupBoundary,
		scenario: fmt.Sprintf("bootstrap → %s (plugin) with a keep-all WASM transform vs none", wasmBE.name),
		value:    cell(w, ""), baseline: cell(p, " (no transform)"),
		ratio: ratio, target: fmt.Sprintf("≥ %.0f%%", wasmTarget*100), result: verdict(r >= wasmTarget),
	})
}

// coldBootstrap bootstraps a fold of the main bucket into an empty dir and
// returns the time from Run's start until it is ready at the stream's last
// sequence.
func (b *bench) coldBootstrap(ctx context.Context, label string, be *backend, mode launchMode, dir string,
	t fold.Transform) (time.Duration, error) {
	if err := os.RemoveAll(dir); err != nil {
		return 0, err
	}
	d, u, err := b.runToSynced(ctx, label, be, mode, dir, t)
	if err != nil {
		return 0, err
	}
	b.logf("  %-18s %8v  %s  [%s]", label, d.Round(time.Millisecond), fmtRate(float64(b.o.keys)/d.Seconds(), "keys/s"), u)
	return d, nil
}

// runToSynced starts a fold of the main bucket on dir and returns the time
// from Run's start until it is ready at the stream's last sequence, with
// what it used; the fold is stopped again.
func (b *bench) runToSynced(ctx context.Context, label string, be *backend, mode launchMode, dir string,
	t fold.Transform) (time.Duration, usage, error) {
	last, err := b.lastSeq(ctx)
	if err != nil {
		return 0, usage{}, err
	}
	runtime.GC() // leave no garbage of the previous measurement to this one
	r, err := b.startFold(ctx, label, be, mode, dir, nil, t)
	if err != nil {
		return 0, usage{}, err
	}
	d, err := r.waitSynced(ctx, last, 1, b.o.wait)
	u := r.usage(d)
	if err := errors.Join(err, r.stop(time.Minute)); err != nil {
		return 0, usage{}, err
	}
	u.pluginCPU, _ = r.procs.totals()
	return d, u, nil
}

// rawBootstrap times a raw kv.WatchAll of the main bucket from the call to
// the nil marker that ends the initial values, counting the entries or, with
// fill, also storing them in a map.
func (b *bench) rawBootstrap(ctx context.Context, fill bool) (time.Duration, error) {
	name := rawName(fill)
	runtime.GC()
	var d time.Duration
	err := labelled(ctx, name, func(ctx context.Context) error {
		kv, closeConn, err := b.rawKV(ctx, name)
		if err != nil {
			return err
		}
		defer closeConn()
		wctx, cancel := context.WithTimeout(ctx, b.o.wait)
		defer cancel()
		cpu0 := selfCPU()
		start := time.Now()
		w, err := kv.WatchAll(wctx)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer w.Stop()
		m := map[string][]byte{}
		n := 0
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return fmt.Errorf("%s: watcher closed after %d entries", name, n)
				}
				if e == nil {
					d = time.Since(start)
					if n != b.o.keys {
						return fmt.Errorf("%s: %d entries before the nil marker, want %d", name, n, b.o.keys)
					}
					b.logf("  %-18s %8v  %s  [process CPU %v]", name, d.Round(time.Millisecond),
						fmtRate(float64(n)/d.Seconds(), "keys/s"), (selfCPU() - cpu0).Round(time.Millisecond))
					return nil
				}
				n++
				if fill {
					m[e.Key()] = e.Value()
				}
			case <-wctx.Done():
				return fmt.Errorf("%s: %d of %d entries after %v: %w", name, n, b.o.keys, b.o.wait, wctx.Err())
			}
		}
	})
	return d, err
}
