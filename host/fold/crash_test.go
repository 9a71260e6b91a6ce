package fold_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// TestPluginKilledMidBootstrap: SIGKILL the store plugin while batches are
// in flight. The host notices, restarts the plugin, resumes from the
// cursor the store committed, and the fold ends equal to the bucket.
func TestPluginKilledMidBootstrap(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "big"})
	putAll(t, js, "big", 60000, "key.", "value-")
	_, last := lastSeq(t, js, "big")

	h := newHarness(t, js, "big", nil, t.TempDir())
	h.cfg.MaxEntries = 100
	h.start()
	ctx := context.Background()
	testenv.Eventually(t, 30*time.Second, "the first batches", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.plugins) > 0 && h.f.Status(ctx).Pending > 0
	})
	time.Sleep(50 * time.Millisecond)
	victim := h.lastPlugin()
	pid := victim.Pid()
	if st := h.f.Status(ctx); st.Ready {
		t.Fatalf("setup: the bootstrap finished before the kill (%+v)", st)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitSynced(last)
	h.mu.Lock()
	launched := len(h.plugins)
	h.mu.Unlock()
	if launched < 2 || h.lastPlugin().Pid() == pid {
		t.Fatalf("the plugin was not restarted (%d launches)", launched)
	}
	diff(t, h.contents(), testenv.Contents(t, kv, ""))
}
