package fold_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// countingPiper is a plugin that counts the batches sent on its pipes.
type countingPiper struct {
	*pluginhost.Plugin
	sent *atomic.Int32
}

func (c countingPiper) Pipe(ctx context.Context) (pluginhost.BatchPipe, error) {
	p, err := c.Plugin.Pipe(ctx)
	if err != nil {
		return nil, err
	}
	return countingPipe{p, c.sent}, nil
}

type countingPipe struct {
	pluginhost.BatchPipe
	sent *atomic.Int32
}

func (c countingPipe) Send(b *sdk.Batch) error {
	err := c.BatchPipe.Send(b)
	if err == nil {
		c.sent.Add(1)
	}
	return err
}

// withoutPipe is a plugin seen only as a Handle, without its pipe: the
// applier commits each batch alone, as for a store in this process.
type withoutPipe struct{ fold.Handle }

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
			h.wrapLaunch(func(p *pluginhost.Plugin) fold.Handle {
				if !piped {
					return withoutPipe{p}
				}
				return countingPiper{p, &sent}
			})
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
