package fold_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// countingPiper is a plugin whose pipes are counted.
type countingPiper struct {
	*sdk.Plugin
	pipes *atomic.Int32
}

func (c countingPiper) Pipe(ctx context.Context) (*sdk.Pipe, error) {
	c.pipes.Add(1)
	return c.Plugin.Pipe(ctx)
}

// withoutPipe is a plugin seen only as a fold.Handle: no pipe (and no bulk
// load), as a plugin built with an older SDK.
type withoutPipe struct{ fold.Handle }

// TestCatchUpBatchesArePiped bootstraps in small batches with the store's
// pipe and without it: both folds end equal to the bucket, and the first
// one went through the pipe.
func TestCatchUpBatchesArePiped(t *testing.T) {
	for _, piped := range []bool{true, false} {
		name := map[bool]string{true: "piped", false: "one Apply at a time"}[piped]
		t.Run(name, func(t *testing.T) {
			h, kv, last, _ := filledBucket(t, 5000)
			h.cfg.MaxEntries = 100
			var pipes atomic.Int32
			launch := h.cfg.Launch
			h.cfg.Launch = func(ctx context.Context) (fold.Handle, error) {
				p, err := launch(ctx)
				if err != nil || !piped {
					return withoutPipe{p}, err
				}
				return countingPiper{p.(*sdk.Plugin), &pipes}, nil
			}
			h.start()
			h.waitSynced(last)
			diff(t, h.contents(), testenv.Contents(t, kv, ""))
			if n := pipes.Load(); piped && n == 0 {
				t.Error("the bootstrap never opened the store's pipe")
			}
		})
	}
}
