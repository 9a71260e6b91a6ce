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
	// A flush or compaction that fails (a full disk) is retried at once and
	// forever, and would otherwise log thousands of lines a minute.
	bg := newSometimes()
	// An import or a bootstrap that writes faster than memtables are
	// flushed stalls for a moment many times a minute: pebble holding the
	// writer back, not a fault. One warning every ten seconds still shows
	// a store that stalls for good.
	stalls := newSometimes()
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			bg.do(func(suppressed int64) {
				l.Error("pebble background error", "err", err, "suppressed", suppressed)
			})
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			l.Error("pebble found corrupt data", "path", info.Path, "err", info.Details)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			l.Warn("pebble disk is slow", "path", info.Path, "op", info.OpType.String(), "duration", info.Duration)
		},
		// At debug level, what pebble does in the background: a write's
		// latency that jumps is read against these.
		CompactionBegin: func(info pebble.CompactionInfo) {
			l.Debug("pebble compaction began", "job", info.JobID, "reason", info.Reason, "input", info.Input)
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			l.Debug("pebble compaction ended", "job", info.JobID, "took", info.TotalDuration, "err", info.Err)
		},
		FlushEnd: func(info pebble.FlushInfo) {
			l.Debug("pebble flush ended", "job", info.JobID, "reason", info.Reason, "bytes", info.InputBytes, "took", info.TotalDuration, "ingest", info.Ingest, "err", info.Err)
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			stalls.do(func(suppressed int64) {
				l.Warn("pebble write stall", "reason", info.Reason, "suppressed", suppressed)
			})
		},
	}
}

// sometimes bounds how often one kind of event is logged: the first at
// once, then at most one every ten seconds, which reports how many were
// left out since the last.
type sometimes struct {
	every      rate.Sometimes
	suppressed atomic.Int64
}

func newSometimes() *sometimes {
	return &sometimes{every: rate.Sometimes{First: 1, Interval: 10 * time.Second}}
}

// do calls log with the count left out, or counts this one as left out.
func (s *sometimes) do(log func(suppressed int64)) {
	logged := false
	s.every.Do(func() {
		logged = true
		log(s.suppressed.Swap(0))
	})
	if !logged {
		s.suppressed.Add(1)
	}
}
