package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// resumeTarget: a resume takes at most this share of a cold bootstrap.
const resumeTarget = 0.05

// resume measures restarts of the bootstrapped fold of be, which must be
// stopped. Each run makes -resume-updates overwrites, restarts the fold on its directory and
// times it from Run's start to ready at the stream's last sequence.
func (b *bench) resume(ctx context.Context, be *backend) error {
	var ds []time.Duration
	for run := 1; run <= b.o.runs; run++ {
		if err := b.overwrite(ctx, b.o.resumeUpdates); err != nil {
			return err
		}
		last, err := b.lastSeq(ctx)
		if err != nil {
			return err
		}
		runtime.GC()
		r, err := b.startFold(ctx, "resume-"+be.name, be, viaPlugin, b.foldDirs[be.name], nil, nil)
		if err != nil {
			return err
		}
		d, err := r.waitSynced(ctx, last, 1, b.o.wait)
		u := r.usage(d)
		if err := errors.Join(err, r.stop(time.Minute)); err != nil {
			return err
		}
		u.pluginCPU, _ = r.procs.totals()
		b.logf("  %-18s %8v  [%s]", "resume-"+be.name, d.Round(100*time.Microsecond), u)
		ds = append(ds, d)
	}
	d, cold := median(ds), b.cold[be.name]
	b.add(row{
		group: groupResume,
		scenario: fmt.Sprintf("restart of a %s-key fold → %s (plugin) after %s updates, Run to Ready (median of %d)",
			fmtCount(b.o.keys), be.name, fmtCount(b.o.resumeUpdates), len(ds)),
		value: fmtDur(d), baseline: fmtDur(cold) + " (cold bootstrap)",
		ratio: fmtPct(d.Seconds() / cold.Seconds()), target: fmt.Sprintf("≤ %.0f%% of cold", resumeTarget*100),
		result: verdict(d.Seconds() <= resumeTarget*cold.Seconds()),
	})
	return nil
}
