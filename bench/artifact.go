package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Targets of the artifact rows (issue 14).
const (
	// importTarget: fold.Import's records/s over the raw counting
	// WatchAll's keys/s; a node is ready from an artifact faster than NATS
	// delivers the keys. importStretch is the stretch goal, shown only.
	importTarget  = 1.0
	importStretch = 2.0
	// exportTarget: Export's records/s from a live fold over the same.
	exportTarget = 1.0
	// exportP99Slack: put→visible p99 while the fold exports is at most
	// the same fold's p99 without an export plus this.
	exportP99Slack = 2 * time.Millisecond
)

// artifactResult is what the artifact group measured of one backend.
type artifactResult struct {
	path      string          // the artifact of the last export
	exports   []time.Duration // each export's time
	exportRaw []time.Duration // the raw baseline measured just before each export
	records   uint64
	quiet     [][]time.Duration // put→visible, no export running, of each run, sorted
	during    [][]time.Duration // put→visible of the puts made while exporting, of each run, sorted
	imports   []childResult
}

// artifactRuns is the number of exports and imports per backend.
func (b *bench) artifactRuns() int {
	if b.o.artifactRuns > 0 {
		return b.o.artifactRuns
	}
	return b.o.runs
}

// artifacts measures snapshot artifacts for each backend: exports of its
// bootstrapped fold while puts go on (in this process, with put→visible
// latencies before and during each), imports of the artifact into a new
// fold (fold.Import, in a child process), each against the raw counting
// WatchAll measured just before it; and the host's peak RSS of exports and
// of imports, in child processes. The raw baseline is measured here, run
// by run, rather than taken from the bootstrap rounds minutes earlier: on
// a shared machine the load of those minutes can be another.
func (b *bench) artifacts(ctx context.Context) error {
	res := map[string]*artifactResult{}
	for _, be := range b.backends {
		r := &artifactResult{path: filepath.Join(b.dir, "artifact-"+be.name+".slsnap")}
		res[be.name] = r
		if err := b.exportLive(ctx, be, r); err != nil {
			return fmt.Errorf("%s export: %w", be.name, err)
		}
	}
	// Imports in rounds over the backends, like the bootstrap rounds, each
	// round after a raw baseline.
	var importRaw []time.Duration
	for run := 1; run <= b.artifactRuns(); run++ {
		b.logf("import round %d of %d", run, b.artifactRuns())
		d, err := b.rawBootstrap(ctx, false)
		if err != nil {
			return err
		}
		importRaw = append(importRaw, d)
		for _, be := range b.backends {
			r := res[be.name]
			dir := b.foldDir(be.name, "import", run)
			c, err := b.runChildProc(ctx, "import-"+be.name, childImport, bucketMain, dir, be, "-artifact", r.path)
			if err != nil {
				return err
			}
			if c.Records != r.records {
				return fmt.Errorf("import %s: %d records, the artifact has %d", be.name, c.Records, r.records)
			}
			r.imports = append(r.imports, c)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
	}
	// The host's memory while exporting: the first backend's fold, resumed
	// in a child and exported there while puts go on, artifactRuns times;
	// each after a memory reference when the memory group measured none.
	be := b.backends[0]
	var mems, refs []childResult
	for run := 1; run <= b.artifactRuns(); run++ {
		if !b.o.has("memory") {
			ref, err := b.memoryReference(ctx)
			if err != nil {
				return err
			}
			refs = append(refs, ref)
		}
		mem, err := b.exportChild(ctx, be)
		if err != nil {
			return err
		}
		mems = append(mems, mem)
	}
	b.artifactRows(res, importRaw)
	b.memoryRow(fmt.Sprintf("export of %s keys from a live fold (%s, puts going on)", fmtCount(b.o.keys), be.name), mems, refs)
	var importRefs []childResult
	if len(refs) == len(res[be.name].imports) {
		importRefs = refs
	}
	b.memoryRow(fmt.Sprintf("import of %s keys → %s", fmtCount(b.o.keys), be.name), res[be.name].imports, importRefs)
	for _, r := range res {
		if err := os.Remove(r.path); err != nil {
			return err
		}
	}
	return nil
}

// exportLive exports the bootstrapped fold of be, running in this process,
// artifactRuns times to r.path. Each run is a raw counting WatchAll (the
// export's baseline, with no puts going on), then puts every 1/-live-rate
// to a hot key while an observer polls fold.Get for it: half a second of
// warm-up, -live-for with no export (the latency reference of the run),
// then the export; the puts made while it ran are the run's figure.
func (b *bench) exportLive(ctx context.Context, be *backend, r *artifactResult) error {
	last, err := b.lastSeq(ctx)
	if err != nil {
		return err
	}
	fr, err := b.startFold(ctx, "export-"+be.name, be, viaPlugin, b.foldDirs[be.name], nil, nil)
	if err != nil {
		return err
	}
	if _, err := fr.waitSynced(ctx, last, 1, b.o.wait); err != nil {
		return errors.Join(err, fr.stop(time.Minute))
	}
	for k := 1; k <= b.artifactRuns(); k++ {
		if err = b.exportRun(ctx, be, fr, r, k); err != nil {
			break
		}
	}
	return errors.Join(err, fr.stop(time.Minute))
}

// exportRun is run k of exportLive.
func (b *bench) exportRun(ctx context.Context, be *backend, fr *foldRun, r *artifactResult, k int) error {
	d, err := b.rawBootstrap(ctx, false)
	if err != nil {
		return err
	}
	r.exportRaw = append(r.exportRaw, d)
	warm := b.warmPuts()
	quiet := max(1, int(float64(b.o.liveRate)*b.o.liveFor.Seconds()))
	limit := warm + quiet + int(float64(b.o.liveRate)*b.o.wait.Seconds())
	var (
		mu         sync.Mutex
		spanStart  time.Time
		spanEnd    time.Time
		exportErr  error
		once       sync.Once
		exportDone = make(chan struct{})
	)
	runExport := func() {
		defer close(exportDone)
		err := labelled(ctx, "export-"+be.name, func(ctx context.Context) error {
			ectx, cancel := context.WithTimeout(ctx, b.o.wait)
			defer cancel()
			mu.Lock()
			spanStart = time.Now()
			mu.Unlock()
			n, d, err := exportFile(ectx, fr, r.path)
			if err != nil {
				return err
			}
			if n != uint64(b.o.keys) {
				return fmt.Errorf("exported %d records, the bucket has %d keys", n, b.o.keys)
			}
			r.records = n
			r.exports = append(r.exports, d)
			b.logf("  %-18s %8v  %s", "export-"+be.name, d.Round(time.Millisecond), fmtRate(float64(n)/d.Seconds(), "records/s"))
			return nil
		})
		mu.Lock()
		spanEnd, exportErr = time.Now(), err
		mu.Unlock()
	}
	more := func(i int) bool {
		if i == warm+quiet {
			once.Do(func() { go runExport() })
		}
		select {
		case <-exportDone:
			return false
		default:
			return true
		}
	}
	hot := b.hotKey()
	s0 := fr.applyStats()
	var p *probe
	err = labelled(ctx, "export-live-"+be.name, func(ctx context.Context) (err error) {
		p, err = b.putPhase(ctx, hot, b.foldGetObserver(fr.f, hot), limit, more)
		return err
	})
	once.Do(func() { close(exportDone) }) // the puts ended before the export began
	<-exportDone
	stats := fr.applyStats().since(s0)
	if err := errors.Join(err, exportErr); err != nil {
		return err
	}
	if len(r.exports) < k {
		return fmt.Errorf("the export did not run: the puts ended after %d", p.total())
	}
	var quietLat, during []time.Duration
	for i := warm; i < p.total(); i++ {
		at, ok := p.started(i)
		if !ok {
			continue
		}
		switch t := p.base.Add(at); {
		case i < warm+quiet:
			quietLat = append(quietLat, p.lat[i])
		case !t.Before(spanStart) && !t.After(spanEnd):
			during = append(during, p.lat[i])
		}
	}
	slices.Sort(quietLat)
	slices.Sort(during)
	r.quiet, r.during = append(r.quiet, quietLat), append(r.during, during)
	b.logf("  %-18s run %d: put→visible via fold.Get p99 %s without an export (%d puts), %s during the export (%d puts) [%s]",
		"export-live-"+be.name, k, fmtMs(percentile(quietLat, 0.99)), len(quietLat),
		fmtMs(percentile(during, 0.99)), len(during), stats)
	return nil
}

// exportChild resumes the bootstrapped fold of be in a child process and
// exports it there, while puts go on at -live-rate, and reports the child.
func (b *bench) exportChild(ctx context.Context, be *backend) (childResult, error) {
	kv, closeConn, err := b.rawKV(ctx, "export-child-puts")
	if err != nil {
		return childResult{}, err
	}
	defer closeConn()
	pctx, stop := context.WithCancel(ctx)
	hot := b.hotKey()
	putErr := make(chan error, 1)
	go func() {
		interval := time.Second / time.Duration(b.o.liveRate)
		t := time.NewTicker(interval)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-pctx.Done():
				putErr <- nil
				return
			case <-t.C:
			}
			if _, err := kv.Put(pctx, hot, b.vals.indexed(i)); err != nil && pctx.Err() == nil {
				putErr <- err
				return
			}
		}
	}()
	path := filepath.Join(b.dir, "artifact-memory.slsnap")
	res, err := b.runChildProc(ctx, "export-mem-"+be.name, childExport, bucketMain, b.foldDirs[be.name], be, "-artifact", path)
	stop()
	err = errors.Join(err, <-putErr)
	if err == nil && res.Records != uint64(b.o.keys) {
		err = fmt.Errorf("export child: %d records, the bucket has %d keys", res.Records, b.o.keys)
	}
	return res, errors.Join(err, os.Remove(path))
}

// artifactRows adds the rows of the artifact group: exports against the
// raw counting WatchAll measured before each, imports against the one of
// their round.
func (b *bench) artifactRows(res map[string]*artifactResult, importRaw []time.Duration) {
	n := float64(b.o.keys)
	rates := func(ds []time.Duration) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = n / d.Seconds()
		}
		return out
	}
	cell := func(rs []float64, unit, what string) string {
		m, sp := medSpread(rs, rateOf)
		return fmtRate(m, unit) + sp + what
	}
	for _, be := range b.backends {
		r := res[be.name]
		got, raw := rates(r.exports), rates(r.exportRaw)
		ratio := medianOf(got) / medianOf(raw)
		b.add(row{
			group: groupArtifact,
			scenario: fmt.Sprintf("export %s keys of a live fold → file, %s (plugin), %d puts/s going on",
				fmtCount(b.o.keys), be.name, b.o.liveRate),
			value: cell(got, "records/s", ""), baseline: cell(raw, "keys/s", " (WatchAll, count, before each export)"),
			ratio:  pctOf(ratio) + rangeOf(pairwise(got, raw, div), pctOf),
			target: fmt.Sprintf("≥ %.0f%%", exportTarget*100), result: verdict(ratio >= exportTarget),
		})
		var q99, q50, d99, d50 []float64
		puts := 0
		for k := range r.during {
			if len(r.during[k]) == 0 || len(r.quiet[k]) == 0 {
				continue
			}
			q99, q50 = append(q99, float64(percentile(r.quiet[k], 0.99))), append(q50, float64(percentile(r.quiet[k], 0.50)))
			d99, d50 = append(d99, float64(percentile(r.during[k], 0.99))), append(d50, float64(percentile(r.during[k], 0.50)))
			puts += len(r.during[k])
		}
		latCell := func(p99, p50 []float64) string {
			return fmt.Sprintf("%s (%s)%s", fmtMs(time.Duration(medianOf(p99))), fmtMs(time.Duration(medianOf(p50))), spread(p99, msOf))
		}
		rw := row{
			group:    groupArtifact,
			scenario: fmt.Sprintf("put→visible via fold.Get during each export, %s, %d puts/s: p99 (p50)", be.name, b.o.liveRate),
			target:   "≤ no export + 2 ms",
		}
		if len(d99) == 0 {
			rw.value, rw.baseline, rw.ratio, rw.result = "no put during an export", "—", "—", "n/a"
		} else {
			diff := time.Duration(medianOf(d99) - medianOf(q99))
			rw.value = latCell(d99, d50) + fmt.Sprintf(", %d puts", puts)
			rw.baseline = latCell(q99, q50) + fmt.Sprintf(" same fold, %v before each export", b.o.liveFor)
			rw.ratio = fmtDelta(diff) + rangeOf(pairwise(d99, q99, sub), deltaOf)
			rw.result = verdict(diff <= exportP99Slack)
		}
		b.add(rw)
		ds := make([]time.Duration, len(r.imports))
		for i, c := range r.imports {
			ds[i] = c.Elapsed
		}
		got, raw = rates(ds), rates(importRaw)
		ratio = medianOf(got) / medianOf(raw)
		b.add(row{
			group: groupArtifact,
			scenario: fmt.Sprintf("import %s keys from an artifact file → %s (plugin), fold.Import to published",
				fmtCount(b.o.keys), be.name),
			value: cell(got, "records/s", ""), baseline: cell(raw, "keys/s", " (WatchAll, count, each import round)"),
			ratio:  pctOf(ratio) + rangeOf(pairwise(got, raw, div), pctOf),
			target: fmt.Sprintf("≥ %.0f%% (stretch %.0f%%)", importTarget*100, importStretch*100),
			result: verdict(ratio >= importTarget),
		})
	}
}
