package fold

import (
	"time"
)

// progressEvery is how often a bootstrap logs its progress.
const progressEvery = 5 * time.Second

// progress logs a bootstrap's rate and ETA from the consumer's pending count.
type progress struct {
	total   uint64
	start   time.Time
	lastLog time.Time
}

func newProgress(total uint64) *progress {
	now := time.Now()
	return &progress{total: total, start: now, lastLog: now}
}

func (p *progress) observe(f *Fold, pending uint64) {
	if pending == 0 || p.total == 0 {
		return
	}
	now := time.Now()
	if now.Sub(p.lastLog) < progressEvery {
		return
	}
	p.lastLog = now
	done := p.total - min(pending, p.total)
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(done) / elapsed
	attrs := []any{"done", done, "pending", pending, "rate_per_s", int(rate)}
	if rate > 0 {
		attrs = append(attrs, "eta", (time.Duration(float64(pending)/rate) * time.Second).Round(time.Second).String())
	}
	f.log.Info("bootstrap progress", attrs...)
}
