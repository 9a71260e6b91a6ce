package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
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
	path    string          // the artifact of the last export
	exports []time.Duration // each export's time
	records uint64
	quiet   []time.Duration // put→visible, no export running, sorted
	during  []time.Duration // put→visible of the puts made while exporting, sorted
	imports []childResult
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
// latencies before and during them), imports of the artifact into a new
// fold (fold.Import, in a child process), each against the raw counting
// WatchAll of the same run; and the host's peak RSS of an export and of
// an import, in child processes. The raw baseline is measured here, before
// each backend's exports and in each import round, rather than taken from
// the bootstrap rounds minutes earlier: on a shared machine the load of
// those minutes can be another.
func (b *bench) artifacts(ctx context.Context) error {
	if _, err := b.memoryReference(ctx); err != nil {
		return err
	}
	var raw []time.Duration
	measureRaw := func() error {
		d, err := b.rawBootstrap(ctx, false)
		raw = append(raw, d)
		return err
	}
	res := map[string]*artifactResult{}
	for _, be := range b.backends {
		r := &artifactResult{path: filepath.Join(b.dir, "artifact-"+be.name+".slsnap")}
		res[be.name] = r
		if err := measureRaw(); err != nil {
			return err
		}
		if err := b.exportLive(ctx, be, r); err != nil {
			return fmt.Errorf("%s export: %w", be.name, err)
		}
	}
	// Imports in rounds over the backends, like the bootstrap rounds.
	for run := 1; run <= b.artifactRuns(); run++ {
		b.logf("import round %d of %d", run, b.artifactRuns())
		if err := measureRaw(); err != nil {
			return err
		}
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
	// in a child and exported there while puts go on.
	be := b.backends[0]
	mem, err := b.exportChild(ctx, be)
	if err != nil {
		return err
	}
	count := float64(b.o.keys) / median(raw).Seconds()
	b.artifactRows(res, count, len(raw))
	b.memoryRow(fmt.Sprintf("export of %s keys from a live fold (%s, puts going on)", fmtCount(b.o.keys), be.name), mem)
	imports := res[be.name].imports
	slices.SortFunc(imports, func(x, y childResult) int { return int(x.HostHWMKB - y.HostHWMKB) })
	b.memoryRow(fmt.Sprintf("import of %s keys → %s (median of %d)", fmtCount(b.o.keys), be.name, len(imports)),
		imports[len(imports)/2])
	for _, r := range res {
		if err := os.Remove(r.path); err != nil {
			return err
		}
	}
	return nil
}

// exportLive exports the bootstrapped fold of be, running in this process,
// artifactRuns times back to back to r.path, while a put every 1/-live-rate
// goes to a hot key and an observer polls fold.Get for it. The puts of the
// -live-for before the first export are the latency reference; those made
// while an export ran are the figure.
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
	runExports := func() {
		defer close(exportDone)
		err := labelled(ctx, "export-"+be.name, func(ctx context.Context) error {
			ectx, cancel := context.WithTimeout(ctx, b.o.wait)
			defer cancel()
			mu.Lock()
			spanStart = time.Now()
			mu.Unlock()
			for range b.artifactRuns() {
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
			}
			return nil
		})
		mu.Lock()
		spanEnd, exportErr = time.Now(), err
		mu.Unlock()
	}
	more := func(i int) bool {
		if i == warm+quiet {
			once.Do(func() { go runExports() })
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
		p, err = b.putPhase(ctx, hot, b.pollObserver("fold.Get", func(ctx context.Context) ([]byte, error) {
			e, err := fr.f.Get(ctx, []byte(hot))
			if errors.Is(err, sdk.ErrNotFound) {
				return nil, nil
			}
			return e.Value, err
		}), limit, more)
		return err
	})
	once.Do(func() { close(exportDone) }) // the puts ended before any export began
	<-exportDone
	stats := fr.applyStats().since(s0)
	if err := errors.Join(err, exportErr, fr.stop(time.Minute)); err != nil {
		return err
	}
	if len(r.exports) == 0 {
		return fmt.Errorf("no export ran: the puts ended after %d", p.total())
	}
	for i := warm; i < p.total(); i++ {
		at, ok := p.started(i)
		if !ok {
			continue
		}
		switch t := p.base.Add(at); {
		case i < warm+quiet:
			r.quiet = append(r.quiet, p.lat[i])
		case !t.Before(spanStart) && !t.After(spanEnd):
			r.during = append(r.during, p.lat[i])
		}
	}
	slices.Sort(r.quiet)
	slices.Sort(r.during)
	b.logf("  %-18s put→visible via fold.Get p99 %s without an export (%d puts), %s during %d exports (%d puts) [%s]",
		"export-live-"+be.name, fmtMs(percentile(r.quiet, 0.99)), len(r.quiet),
		fmtMs(percentile(r.during, 0.99)), len(r.exports), len(r.during), stats)
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

// artifactRows adds the rows of the artifact group, against count, the raw
// counting WatchAll's keys/s (a median of rawRuns).
func (b *bench) artifactRows(res map[string]*artifactResult, count float64, rawRuns int) {
	n := float64(b.o.keys)
	baseline := fmtRate(count, "keys/s") + fmt.Sprintf(" (WatchAll, count; median of %d)", rawRuns)
	for _, be := range b.backends {
		r := res[be.name]
		got, spread := rateSpread(n, r.exports)
		b.add(row{
			group: groupArtifact,
			scenario: fmt.Sprintf("export %s keys of a live fold → file, %s (plugin), %d puts/s going on (median of %d)",
				fmtCount(b.o.keys), be.name, b.o.liveRate, len(r.exports)),
			value: fmtRate(got, "records/s") + spread, baseline: baseline,
			ratio: fmtPct(got / count), target: fmt.Sprintf("≥ %.0f%%", exportTarget*100), result: verdict(got/count >= exportTarget),
		})
		q50, q99 := percentile(r.quiet, 0.50), percentile(r.quiet, 0.99)
		rw := row{
			group:    groupArtifact,
			scenario: fmt.Sprintf("put→visible via fold.Get during the exports, %s, %d puts/s: p99 (p50)", be.name, b.o.liveRate),
			baseline: fmt.Sprintf("%s (%s) same fold, no export", fmtMs(q99), fmtMs(q50)),
			target:   "≤ no export + 2 ms",
		}
		if len(r.during) == 0 {
			rw.value, rw.ratio, rw.result = "no put during the exports", "—", "n/a"
		} else {
			d50, d99 := percentile(r.during, 0.50), percentile(r.during, 0.99)
			rw.value = fmt.Sprintf("%s (%s), %d puts", fmtMs(d99), fmtMs(d50), len(r.during))
			rw.ratio, rw.result = fmtDelta(d99-q99), verdict(d99 <= q99+exportP99Slack)
		}
		b.add(rw)
		ds := make([]time.Duration, len(r.imports))
		for i, c := range r.imports {
			ds[i] = c.Elapsed
		}
		got, spread = rateSpread(n, ds)
		b.add(row{
			group: groupArtifact,
			scenario: fmt.Sprintf("import %s keys from an artifact file → %s (plugin), fold.Import to published (median of %d)",
				fmtCount(b.o.keys), be.name, len(ds)),
			value: fmtRate(got, "records/s") + spread, baseline: baseline,
			ratio:  fmtPct(got / count),
			target: fmt.Sprintf("≥ %.0f%% (stretch %.0f%%)", importTarget*100, importStretch*100),
			result: verdict(got/count >= importTarget),
		})
	}
}

// rateSpread is n over the median of ds, per second, and the range of the
// rates of ds as " (low–high)" when there is more than one.
func rateSpread(n float64, ds []time.Duration) (float64, string) {
	rate := n / median(ds).Seconds()
	if len(ds) < 2 {
		return rate, ""
	}
	lo, hi := slices.Max(ds), slices.Min(ds)
	return rate, fmt.Sprintf(" (%s–%s)", strings.TrimSpace(fmtRate(n/lo.Seconds(), "")), strings.TrimSpace(fmtRate(n/hi.Seconds(), "")))
}
