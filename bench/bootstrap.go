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

// bootstrapTargets are the targets: the share of the raw counting
// watcher's rate a bootstrap through each plugin must reach.
var bootstrapTargets = map[string]float64{"pebble": 0.60, "sqlite": 0.35}

// Targets of the plugin boundary rows.
const (
	pluginTarget = 0.80 // plugin rate / in-process rate
	wasmTarget   = 0.90 // with a keep-all WASM transform / without
)

// bootstraps runs the bootstrap rounds: in each round the raw baselines, a
// cold bootstrap through each plugin and, for the boundary group, in process
// and with a WASM transform. Rounds interleave the variants so that load
// from elsewhere on a shared machine spreads over all of them; -budget may
// end them early. When keep is set, the last round's plugin folds stay for
// the live, read, resume and artifact groups.
func (b *bench) bootstraps(ctx context.Context, keep bool) error {
	o := b.o
	runs := o.runs
	if !o.has("bootstrap") && !o.has("boundary") {
		runs = 1 // only to make the folds the other groups need
	}
	last, err := b.lastSeq(ctx)
	if err != nil {
		return err
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
			for _, fill := range []bool{false, true} {
				d, err := b.rawBootstrap(ctx, fill)
				if err != nil {
					return err
				}
				record(rawName(fill), d)
			}
		}
		for _, be := range b.backends {
			dir := b.foldDir(be.name, "plugin", r)
			d, err := b.coldBootstrap(ctx, "bootstrap-"+be.name, be, viaPlugin, dir, nil, last)
			if err != nil {
				return err
			}
			record("plugin/"+be.name, d)
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
			if d, err = b.coldBootstrap(ctx, "inproc-"+be.name, be, inProcess, dir, nil, last); err != nil {
				return err
			}
			record("inproc/"+be.name, d)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		if wasm != nil {
			dir := b.foldDir(wasmBE.name, "wasm", r)
			d, err := b.coldBootstrap(ctx, "wasm-"+wasmBE.name, wasmBE, viaPlugin, dir, wasm, last)
			if err != nil {
				return err
			}
			record("wasm/"+wasmBE.name, d)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
		if r < runs && !b.roomForRound(time.Since(roundStart), series) {
			b.logf("budget: %v would be exceeded by another round; stopping after %d of %d rounds", o.budget, r, runs)
			break
		}
	}
	b.rounds = len(series["plugin/"+wasmBE.name])
	for _, be := range b.backends {
		b.cold[be.name] = median(series["plugin/"+be.name])
	}
	b.bootstrapRows(series, wasmBE)
	return nil
}

// roomForRound reports whether another bootstrap round, as long as the last
// one, still leaves time for the groups after it within -budget. Those are
// estimated as fixed phases plus, for the memory group, two bootstraps of
// the first backend and, for the artifact group, an export and an import
// per run and backend at about half a bootstrap each, an export child and
// its raw baselines.
func (b *bench) roomForRound(last time.Duration, series map[string][]time.Duration) bool {
	o := b.o
	if o.budget == 0 {
		return true
	}
	rest := time.Minute
	if o.has("live") {
		rest += time.Duration(len(b.backends)) * (2*(o.liveFor+time.Second) + 30*time.Second)
	}
	if o.has("reads") {
		// The cache's warm-up and -runs rounds of four phases on the first
		// backend, of two on each.
		phases := time.Duration(o.runs * (4 + 2*len(b.backends)))
		rest += 15*time.Second + phases*(o.readFor+200*time.Millisecond)
	}
	if o.has("changes") {
		// On the first backend: a raw phase and a slipstream phase.
		phase := time.Duration(changeCount(o)) * time.Second / time.Duration(o.changeRate)
		rest += 2 * (phase + 3*time.Second)
	}
	if o.has("memory") {
		rest += 2 * median(series["plugin/"+b.backends[0].name])
	}
	if o.has("artifact") {
		for _, be := range b.backends {
			rest += o.liveFor + 2*time.Second + time.Duration(b.artifactRuns())*median(series["plugin/"+be.name])
		}
		rest += time.Duration(len(b.backends)+b.artifactRuns()) * median(series["raw-count"]) // the raw baselines
		rest += median(series["plugin/"+b.backends[0].name]) / 2
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

// bootstrapRows adds the rows of the bootstrap and boundary groups.
func (b *bench) bootstrapRows(series map[string][]time.Duration, wasmBE *backend) {
	n := float64(b.o.keys)
	rate := func(name string) float64 { return n / median(series[name]).Seconds() }
	runs := fmt.Sprintf(" (median of %d)", len(series["plugin/"+wasmBE.name]))
	if b.o.has("bootstrap") {
		count := rate("raw-count")
		for _, be := range b.backends {
			want := bootstrapTargets[be.name]
			got := rate("plugin/" + be.name)
			b.add(row{
				group:    groupBootstrap,
				scenario: fmt.Sprintf("bootstrap %s keys → %s (plugin), Run to Ready%s", fmtCount(b.o.keys), be.name, runs),
				value:    fmtRate(got, "keys/s"), baseline: fmtRate(count, "keys/s") + " (WatchAll, count)",
				ratio: fmtPct(got / count), target: fmt.Sprintf("≥ %.0f%%", want*100), result: verdict(got/count >= want),
			})
		}
		m := rate("raw-map")
		b.add(row{
			group:    groupBootstrap,
			scenario: "reference: raw WatchAll → Go map" + runs,
			value:    fmtRate(m, "keys/s"), baseline: fmtRate(count, "keys/s") + " (WatchAll, count)",
			ratio: fmtPct(m / count), target: "—", result: "—",
		})
	}
	if !b.o.has("boundary") {
		return
	}
	for _, be := range b.backends {
		p, in := rate("plugin/"+be.name), rate("inproc/"+be.name)
		b.add(row{
			group:    groupBoundary,
			scenario: fmt.Sprintf("bootstrap → %s: plugin process vs linked in-process%s", be.name, runs),
			value:    fmtRate(p, "keys/s"), baseline: fmtRate(in, "keys/s") + " (in-process)",
			ratio: fmtPct(p / in), target: fmt.Sprintf("≥ %.0f%%", pluginTarget*100), result: verdict(p/in >= pluginTarget),
		})
	}
	w, p := rate("wasm/"+wasmBE.name), rate("plugin/"+wasmBE.name)
	b.add(row{
		group:    groupBoundary,
		scenario: fmt.Sprintf("bootstrap → %s (plugin) with a keep-all WASM transform vs none%s", wasmBE.name, runs),
		value:    fmtRate(w, "keys/s"), baseline: fmtRate(p, "keys/s") + " (no transform)",
		ratio: fmtPct(w / p), target: fmt.Sprintf("≥ %.0f%%", wasmTarget*100), result: verdict(w/p >= wasmTarget),
	})
}

// coldBootstrap bootstraps a fold of the main bucket into an empty dir and
// returns the time from Run's start until it is ready at the stream's last
// sequence.
func (b *bench) coldBootstrap(ctx context.Context, label string, be *backend, mode launchMode, dir string,
	t fold.Transform, last uint64) (time.Duration, error) {
	if err := os.RemoveAll(dir); err != nil {
		return 0, err
	}
	runtime.GC() // leave no garbage of the previous measurement to this one
	r, err := b.startFold(ctx, label, be, mode, dir, nil, t)
	if err != nil {
		return 0, err
	}
	d, err := r.waitSynced(ctx, last, 1, b.o.wait)
	u := r.usage(d)
	if err := errors.Join(err, r.stop(time.Minute)); err != nil {
		return 0, err
	}
	u.pluginCPU, _ = r.procs.totals()
	b.logf("  %-18s %8v  %s  [%s]", label, d.Round(time.Millisecond), fmtRate(float64(b.o.keys)/d.Seconds(), "keys/s"), u)
	return d, nil
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
