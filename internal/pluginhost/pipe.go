package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/slipstreamkv/slipstream/internal/storepb"
	"github.com/slipstreamkv/slipstream/sdk"
)

// BatchPipe is what a Pipe does, for code that also takes other pipes (a
// test's): see Pipe.
type BatchPipe interface {
	Send(b *sdk.Batch) error
	Wait() (uint64, error)
	Close()
}

// A Pipe sends batches to a plugin without waiting for each to commit, so
// that the host prepares and sends a batch while the plugin applies the one
// before. The plugin commits them in the order sent, each as Apply would;
// the first that fails ends the pipe, and none sent after it is applied.
//
// One goroutine calls Send and one (possibly another) calls Wait, once per
// batch sent, in order.
type Pipe struct {
	stream storepb.Store_ApplyPipeClient
	cancel context.CancelFunc

	mu   sync.Mutex
	sent []uint64 // cursors of the batches sent and not yet waited for
}

// Pipe opens a pipe to the plugin; it ends with ctx or Close. Every plugin
// of this protocol version has one.
func (p *Plugin) Pipe(ctx context.Context) (BatchPipe, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := p.rpc.ApplyPipe(ctx)
	if err != nil {
		cancel()
		return nil, fromStatus(err) // not a BatchPipe holding a nil *Pipe
	}
	return &Pipe{stream: stream, cancel: cancel}, nil
}

// Send sends b. It does not wait for b to commit, only for room in the
// transport. An error means the pipe is broken: b and any batch sent
// before it and not yet waited for may or may not have been applied, as
// after an Apply that failed in transit.
func (p *Pipe) Send(b *sdk.Batch) error {
	p.mu.Lock()
	p.sent = append(p.sent, b.Cursor)
	p.mu.Unlock()
	err := chunks(b, func(req *storepb.ApplyRequest) error { return p.stream.Send(req) })
	if errors.Is(err, io.EOF) {
		// The plugin ended the pipe: Wait returns its status.
		return errors.New("the plugin ended the apply pipe")
	}
	return fromStatus(err)
}

// Wait waits until the oldest batch sent and not yet waited for is
// committed, and returns its cursor; or returns the error that ended the
// pipe, which that batch did not survive.
func (p *Pipe) Wait() (uint64, error) {
	p.mu.Lock()
	if len(p.sent) == 0 {
		p.mu.Unlock()
		return 0, errors.New("apply pipe: Wait without a batch sent")
	}
	want := p.sent[0]
	p.mu.Unlock()
	resp, err := p.stream.Recv()
	if errors.Is(err, io.EOF) {
		err = errors.New("the plugin ended the apply pipe before committing the batch")
	}
	if err != nil {
		return 0, fromStatus(err)
	}
	if resp.GetCursor() != want {
		// The plugin is out of step: stop it applying what follows.
		p.Close()
		return 0, fmt.Errorf("apply pipe: the plugin committed cursor %d, the batch sent had %d", resp.GetCursor(), want)
	}
	p.mu.Lock()
	p.sent = p.sent[1:]
	p.mu.Unlock()
	return want, nil
}

// Close ends the pipe, from any goroutine; a Send or Wait under way
// returns an error. Batches sent and not waited for may or may not be
// applied: wait for each first to know.
func (p *Pipe) Close() { p.cancel() }
