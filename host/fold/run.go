package fold

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// This file is the fold's supervisor: Run and its loop of sessions with
// backoff. A session (session.go) wires the watch, the transforms, the
// batches and the applier for one generation; the generations (directory,
// processes, publishing) are generations.go; what a stored generation's
// metadata means for a resume is resume.go.

// errRestart ends a session so that the next one starts at once (a rebuild
// was decided).
var errRestart = errors.New("restart session")

// Run drives the fold until ctx ends. On ctx end it commits the batch it
// holds, closes its stores and returns nil. Errors of a session (plugin
// death, NATS trouble, a failing transform) are retried with jittered
// backoff while the fold reports itself stalled; Run returns an error only
// when the fold's directory is unusable.
func (f *Fold) Run(ctx context.Context) error {
	if err := f.Open(); err != nil {
		return fmt.Errorf("fold %s: %w", f.cfg.Name, err)
	}
	defer f.gens.closeAll()
	defer f.watchConnection()()
	b := backoff{min: f.cfg.RetryMin, max: f.cfg.RetryMax}
	for {
		before := f.commits.Load()
		err := f.containedSession(ctx)
		if f.commits.Load() != before {
			b.reset() // it made progress: not a failure streak
		}
		if ctx.Err() != nil {
			f.setState(StateStopped, "")
			return nil
		}
		if errors.Is(err, errRestart) {
			continue
		}
		if err == nil {
			b.reset()
			continue
		}
		f.cfg.Metrics.failures.WithLabelValues(f.cfg.Name).Inc()
		reason := err.Error()
		if why, down := f.offline(); down {
			reason = why + " (the session ended with: " + reason + ")"
		}
		f.setState(StateStalled, reason)
		if !f.pause(ctx, b.next()) {
			f.setState(StateStopped, "")
			return nil
		}
	}
}

// pause waits d between two sessions, or less when the published
// generation's plugin dies meanwhile (its readers are waiting for the next
// session to reopen it) or the NATS connection comes back. It reports
// false when ctx ended.
func (f *Fold) pause(ctx context.Context, d time.Duration) bool {
	end := time.NewTimer(d)
	defer end.Stop()
	poll := time.NewTicker(livenessPoll)
	defer poll.Stop()
	// Only a death during the pause cuts it short: a generation that was
	// already dead is the one the last session failed to reopen, and it
	// waits its backoff like any other failure.
	pub := f.gens.published()
	watching := pub != nil && !pub.h.Exited()
	_, wasDown := f.offline()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-end.C:
			return true
		case <-poll.C:
			if watching && pub.h.Exited() {
				return true
			}
			if _, down := f.offline(); wasDown && !down {
				return true
			}
		}
	}
}

// watchConnection shows the fold stalled while the NATS connection is down
// (setOffline), from the moment the client notices, until it is back. It
// returns the function that stops watching.
func (f *Fold) watchConnection() (stop func()) {
	if f.js == nil || f.js.Conn() == nil {
		return func() {}
	}
	nc := f.js.Conn()
	ch := nc.StatusChanged()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			why, _ := f.offline()
			f.setOffline(why)
			if _, ok := <-ch; !ok {
				return
			}
		}
	}()
	return func() {
		nc.RemoveStatusListener(ch)
		<-done
		f.setOffline("")
	}
}

// offline reports whether the NATS connection is down, and says so.
func (f *Fold) offline() (string, bool) {
	if f.js == nil || f.js.Conn() == nil || f.js.Conn().IsConnected() {
		return "", false
	}
	return fmt.Sprintf("nats: %s to the server; reads are served from the fold, which may be behind",
		strings.ToLower(f.js.Conn().Status().String())), true
}

// containedSession runs one session; a panic in it ends the session with a
// *PanicError instead of the process.
func (f *Fold) containedSession(ctx context.Context) (err error) {
	defer f.contain("session", &err)
	return f.session(ctx)
}

// Open reads the fold's directory (creating it when missing) and clears what
// a crash left behind, so that a directory the fold cannot use is an error
// before anything runs. Run opens the fold itself when Open was not called.
func (f *Fold) Open() error { return f.gens.open() }

// Close releases the directory of a fold that Open opened and that is not
// running (Run releases it when it returns), so that another Fold, or
// another process, may use it.
func (f *Fold) Close() { f.gens.unlock() }

// backoff is jittered exponential backoff.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}
