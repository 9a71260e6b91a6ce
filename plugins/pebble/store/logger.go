package store

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/time/rate"
)

// pebbleLogger routes pebble's log into the plugin's slog logger, which
// writes to stderr: pebble's default logger would use the std log package.
// Pebble's informational lines (WAL recovery, file creation) go to Debug.
type pebbleLogger struct {
	l *slog.Logger
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

// Fatalf must not return: pebble calls it when continuing would corrupt the
// database. A panic ends the plugin with a stack trace in the host's log, and
// the host restarts it.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "fatal", true)
	panic("pebble: " + msg)
}

// eventListener reports the events an operator acts on. Corruption found
// while reading is logged rather than fatal (pebble's default), because the
// read that found it already fails with an error the host sees.
func eventListener(l *slog.Logger) *pebble.EventListener {
	bg := &backgroundErrors{l: l, every: rate.Sometimes{First: 1, Interval: 10 * time.Second}}
	stalls := &writeStalls{l: l, every: rate.Sometimes{First: 1, Interval: 10 * time.Second}}
	return &pebble.EventListener{
		BackgroundError: bg.report,
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			l.Error("pebble found corrupt data", "path", info.Path, "err", info.Details)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			l.Warn("pebble disk is slow", "path", info.Path, "op", info.OpType.String(), "duration", info.Duration)
		},
		WriteStallBegin: stalls.report,
	}
}

// backgroundErrors logs pebble's background errors at a bounded rate: a
// flush or compaction that fails (a full disk) is retried at once and
// forever, and would otherwise log thousands of lines a minute.
type backgroundErrors struct {
	l          *slog.Logger
	every      rate.Sometimes
	suppressed atomic.Int64
}

func (b *backgroundErrors) report(err error) {
	logged := false
	b.every.Do(func() {
		logged = true
		b.l.Error("pebble background error", "err", err, "suppressed", b.suppressed.Swap(0))
	})
	if !logged {
		b.suppressed.Add(1)
	}
}

// writeStalls logs pebble's write stalls at a bounded rate: an import or a
// bootstrap that writes faster than memtables are flushed stalls for a
// moment many times a minute, which is pebble holding the writer back, not
// a fault; one warning every ten seconds, with how many were left out,
// still shows a store that stalls for good.
type writeStalls struct {
	l          *slog.Logger
	every      rate.Sometimes
	suppressed atomic.Int64
}

func (w *writeStalls) report(info pebble.WriteStallBeginInfo) {
	logged := false
	w.every.Do(func() {
		logged = true
		w.l.Warn("pebble write stall", "reason", info.Reason, "suppressed", w.suppressed.Swap(0))
	})
	if !logged {
		w.suppressed.Add(1)
	}
}
