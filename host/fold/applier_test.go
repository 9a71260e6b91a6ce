package fold_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// countingPiper is a plugin that counts the batches sent on its pipes.
type countingPiper struct {
	*sdk.Plugin
	sent *atomic.Int32
}

func (c countingPiper) Pipe(ctx context.Context) (sdk.BatchPipe, error) {
	p, err := c.Plugin.Pipe(ctx)
	if err != nil {
		return nil, err
	}
	return countingPipe{p, c.sent}, nil
}

type countingPipe struct {
	sdk.BatchPipe
	sent *atomic.Int32
}

func (c countingPipe) Send(b *sdk.Batch) error {
	err := c.BatchPipe.Send(b)
	if err == nil {
		c.sent.Add(1)
	}
	return err
}

// withoutPipe is a plugin without the pipe, as one built with an older SDK.
type withoutPipe struct{ *sdk.Plugin }

func (withoutPipe) Pipe(context.Context) (sdk.BatchPipe, error) { return nil, sdk.ErrNoPipe }

// TestCatchUpBatchesArePiped bootstraps in small batches with the store's
// pipe and without it: both folds end equal to the bucket, and the first
// one sent most of its batches down the pipe.
func TestCatchUpBatchesArePiped(t *testing.T) {
	for _, piped := range []bool{true, false} {
		name := map[bool]string{true: "piped", false: "one Apply at a time"}[piped]
		t.Run(name, func(t *testing.T) {
			h, kv, last, _ := filledBucket(t, 5000)
			h.cfg.MaxEntries = 100
			var sent atomic.Int32
			launch := h.cfg.Launch
			h.cfg.Launch = func(ctx context.Context) (fold.Handle, error) {
				p, err := launch(ctx)
				if err != nil {
					return nil, err
				}
				if !piped {
					return withoutPipe{p.(*sdk.Plugin)}, nil
				}
				return countingPiper{p.(*sdk.Plugin), &sent}, nil
			}
			h.start()
			h.waitSynced(last)
			diff(t, h.contents(), testenv.Contents(t, kv, ""))
			// 5000 keys in batches of 100: 50 batches, the last of which
			// publishes and so goes alone.
			if n := sent.Load(); piped && n < 40 {
				t.Errorf("%d batches went down the pipe; want most of 50", n)
			}
		})
	}
}
