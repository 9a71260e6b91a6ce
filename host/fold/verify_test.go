package fold_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/chain"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// TestVerifyWhileApplying runs Verify again and again on a fold with a
// WASM transform chain while the fold applies a stream of writes. A chain
// is for one goroutine: under the race detector this fails if Verify and
// the reader share one. Once the writes stop, Verify finds no difference.
func TestVerifyWhileApplying(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx := context.Background()
	module := testenv.WatWasm(t, "transforms/examples/wat/keepall.wat")
	tr, err := chain.New(ctx, chain.Config{Fold: "test", Modules: []config.Transform{{Name: "keepall", Module: module}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	h := newHarness(t, js, "cfg", nil, t.TempDir())
	h.cfg.Transform = tr
	h.cfg.MaxEntries = 20
	h.start()
	if _, err := kv.Put(ctx, "k0", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_, last := lastSeq(t, js, "cfg")
	h.waitSynced(last)

	var stop atomic.Bool
	writes := make(chan error, 1)
	go func() {
		for i := 0; !stop.Load(); i++ {
			if _, err := js.PublishAsync(fmt.Sprintf("$KV.cfg.k%d", i), []byte(fmt.Sprint(i))); err != nil {
				writes <- err
				return
			}
			if i%100 == 99 {
				<-js.PublishAsyncComplete()
			}
		}
		<-js.PublishAsyncComplete()
		writes <- nil
	}()
	verifies := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); verifies++ {
		if _, _, err := h.f.Verify(ctx); err != nil {
			t.Fatalf("verify while applying: %v", err)
		}
	}
	stop.Store(true)
	if err := <-writes; err != nil {
		t.Fatal(err)
	}
	_, last = lastSeq(t, js, "cfg")
	h.waitSynced(last)
	sum, diffs, err := h.f.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Diverged() {
		t.Errorf("after the writes, verify found differences: %+v %v", sum, diffs)
	}
	t.Logf("%d verifies ran while the fold applied writes up to revision %d", verifies, last)
}
