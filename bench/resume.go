package main

import (
	"context"
	"fmt"
	"time"
)

// resumeTarget: a resume takes at most this share of a cold bootstrap.
const resumeTarget = 0.05

// resumeOnce measures a restart of the stopped fold of be in dir, just
// bootstrapped by the same round: it makes -resume-updates overwrites,
// restarts the fold on its directory and times it from Run's start to
// ready at the stream's last sequence.
func (b *bench) resumeOnce(ctx context.Context, be *backend, dir string) (time.Duration, error) {
	if err := b.overwrite(ctx, b.o.resumeUpdates); err != nil {
		return 0, err
	}
	d, u, err := b.runToSynced(ctx, "resume-"+be.name, be, viaPlugin, dir, nil)
	if err != nil {
		return 0, err
	}
	b.logf("  %-18s %8v  [%s]", "resume-"+be.name, d.Round(100*time.Microsecond), u)
	return d, nil
}

// resumeRows adds the resume rows: the median restart against the median
// cold bootstrap of the same rounds.
func (b *bench) resumeRows(series map[string][]time.Duration) {
	for _, be := range b.backends {
		res, cold := series["resume/"+be.name], series["plugin/"+be.name]
		if len(res) == 0 {
			continue
		}
		rf, cf := floats(res), floats(cold)
		ratio := medianOf(rf) / medianOf(cf)
		b.add(row{
			group: groupResume,
			scenario: fmt.Sprintf("restart of a %s-key fold → %s (plugin) after %s updates, Run to Ready",
				fmtCount(b.o.keys), be.name, fmtCount(b.o.resumeUpdates)),
			value: durCell(res), baseline: durCell(cold) + " (cold bootstrap, same rounds)",
			ratio:  fmt.Sprintf("%.1f%%", 100*ratio) + rangeOf(pairwise(rf, cf, div), func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }),
			target: fmt.Sprintf("≤ %.0f%% of cold", resumeTarget*100),
			result: verdict(ratio <= resumeTarget),
		})
	}
}

// durCell is the median of ds and its spread, in seconds when the median
// is a second or more, else in milliseconds.
func durCell(ds []time.Duration) string {
	m := median(ds)
	unit := time.Millisecond
	if m >= time.Second {
		unit = time.Second
	}
	return fmtDur(m) + spread(floats(ds), func(ns float64) string { return fmt.Sprintf("%.2f", ns/float64(unit)) })
}
