package fold

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/slipstreamkv/slipstream/internal/pluginhost"
)

// Piper is a Handle that can send batches without waiting for each to
// commit (a plugin process: *pluginhost.Plugin).
type Piper interface {
	Pipe(ctx context.Context) (pluginhost.BatchPipe, error)
}

// applier commits the batches of one session in order. A batch that
// neither publishes (caught up) nor has a waiter goes down the store's pipe
// when it has one: the plugin applies it while the next is prepared and
// sent, and a completer goroutine moves the cursor as each commits. Any
// other batch first waits for those in flight, then commits alone.
type applier struct {
	f   *Fold
	ctx context.Context
	g   *generation

	pipe pluginhost.BatchPipe // nil until first used
	hand *handoff             // told when the applier waits for a batch

	// Between a send and the drain after it: the completer's queue, the
	// end of the completer, and its error once ended.
	inflight chan inflight
	done     chan struct{}
	failed   error
}

type inflight struct {
	b     *batch
	start time.Time
}

// pipeDepth is how many batches the completer's queue holds; with the one
// it waits for and the one being sent, the plugin has up to three.
const pipeDepth = 1

// contained runs the applier; a panic in it is its error.
func (a *applier) contained(batches <-chan *batch) (err error) {
	defer a.f.contain("applier", &err)
	return a.run(batches)
}

func (a *applier) run(batches <-chan *batch) error {
	defer a.close()
	for {
		a.hand.free()
		b, ok := <-batches
		a.hand.busy()
		if !ok {
			break
		}
		if a.pipeable(b) {
			if err := a.send(b); err != nil {
				return err
			}
			continue
		}
		if err := a.drain(); err != nil {
			return err
		}
		if err := a.f.commit(a.ctx, a.g, b); err != nil {
			return err
		}
		if b.done != nil {
			close(b.done)
		}
	}
	return a.drain()
}

func (a *applier) pipeable(b *batch) bool {
	if b.caughtUp || b.done != nil || a.f.cfg.hooks.CursorBeforeApply {
		return false
	}
	_, ok := a.g.h.(Piper)
	return ok
}

// send puts b on the pipe, opening it first if need be.
func (a *applier) send(b *batch) error {
	if a.pipe == nil {
		// Like Apply, the pipe outlives the session's end: what was sent
		// is waited for, each batch for at most applyTimeout.
		p, err := a.g.h.(Piper).Pipe(context.WithoutCancel(a.ctx))
		if err != nil {
			return applyError(a.g, b, err)
		}
		a.pipe = p
	}
	if a.inflight == nil {
		a.inflight, a.done, a.failed = make(chan inflight, pipeDepth), make(chan struct{}), nil
		go a.complete(a.pipe, a.inflight, a.done)
	}
	// Read-held until the completer records the commit, or the batch
	// turns out not to be in flight.
	a.f.applyGate.RLock()
	start := time.Now()
	if err := a.pipe.Send(b.storeBatch()); err != nil {
		a.f.applyGate.RUnlock()
		// Why the plugin ended the pipe is the answer to the first batch
		// it did not commit: the completer's, or b's once it is done.
		pipe := a.pipe
		if derr := a.drain(); derr != nil {
			return derr
		}
		if _, werr := pipe.Wait(); werr != nil {
			err = werr
		}
		pipe.Close()
		a.pipe = nil
		return applyError(a.g, b, err)
	}
	select {
	case a.inflight <- inflight{b: b, start: start}:
		return nil
	case <-a.done: // the completer stopped at a failure
		a.f.applyGate.RUnlock()
		if err := a.drain(); err != nil {
			return err
		}
		return applyError(a.g, b, errors.New("the apply pipe ended"))
	}
}

// complete waits for each batch sent on p, in order, and records its
// commit. It ends at the first failure, closing p so that the plugin
// applies nothing after it, or when the queue is closed and empty.
func (a *applier) complete(p pluginhost.BatchPipe, queue <-chan inflight, done chan<- struct{}) {
	defer close(done)
	var crashed error
	defer func() {
		if crashed != nil {
			p.Close()
			a.failed = crashed
		}
	}()
	defer a.f.contain("completer", &crashed)
	// Set when a commit was late: the pipe is then closed, and whatever
	// fails next failed because of it.
	var timedOut atomic.Bool
	for in := range queue {
		if !a.completeOne(p, in, &timedOut) {
			return
		}
	}
}

// completeOne waits for one batch sent on p and records its commit, or
// the failure; the batch's hold on the apply gate ends either way.
func (a *applier) completeOne(p pluginhost.BatchPipe, in inflight, timedOut *atomic.Bool) bool {
	defer a.f.applyGate.RUnlock()
	timer := time.AfterFunc(applyTimeout, func() { timedOut.Store(true); p.Close() })
	_, err := p.Wait()
	timer.Stop()
	if err != nil {
		p.Close()
		if timedOut.Load() {
			err = fmt.Errorf("no commit within %v: %w", applyTimeout, context.DeadlineExceeded)
		}
		a.failed = applyError(a.g, in.b, err)
		return false
	}
	a.f.committed(a.g, in.b, in.start)
	return true
}

// drain waits until every batch sent is committed, or returns the error
// that stopped them.
func (a *applier) drain() error {
	if a.inflight == nil {
		return nil
	}
	close(a.inflight)
	<-a.done
	for range a.inflight { // queued behind a failure: never applied
		a.f.applyGate.RUnlock()
	}
	err := a.failed
	a.inflight, a.done = nil, nil
	if err != nil {
		// A pipe that failed is broken: the next batch opens another.
		a.pipe.Close()
		a.pipe = nil
	}
	return err
}

// close ends the pipe. Every path out of run has drained it first, so no
// batch is in flight.
func (a *applier) close() {
	if a.pipe != nil {
		a.pipe.Close()
		a.pipe = nil
	}
}
