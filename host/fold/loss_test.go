package fold_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// limitStream caps the bucket's stream at maxMsgs, dropping the oldest.
func limitStream(t *testing.T, js jetstream.JetStream, bucket string, maxMsgs int64) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = maxMsgs, jetstream.DiscardOld
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// twins runs a scenario with its defence on and off.
func twins(t *testing.T, off fold.Hooks, run func(t *testing.T, hooks fold.Hooks, defended bool)) {
	t.Run("defended", func(t *testing.T) { run(t, fold.Hooks{}, true) })
	t.Run("defence-off", func(t *testing.T) { run(t, off, false) })
}

// gate is a pass-through transform that blocks the fold's reader on the
// first batch holding a key with the given prefix, until opened: the fold
// stops consuming, as a fold behind a slow store does.
type gate struct {
	prefix string
	open   chan struct{}
}

func (g *gate) Digest() string { return "" }
func (g *gate) Apply(ctx context.Context, in []sdk.Mutation) ([]sdk.Mutation, error) {
	for _, c := range in {
		if bytes.HasPrefix(c.Key, []byte(g.prefix)) {
			select {
			case <-g.open:
			case <-ctx.Done():
			}
			break
		}
	}
	return in, nil
}

// TestRetentionPassesRunningWatch: while the fold cannot keep up, retention
// evicts messages its consumer never scanned, among them the delete of
// route.gone. The live floor guard sees it and rebuilds.
func TestRetentionPassesRunningWatch(t *testing.T) {
	twins(t, fold.Hooks{NoRebuild: true}, func(t *testing.T, hooks fold.Hooks, defended bool) {
		srv := testenv.NATS(t)
		_, js := testenv.JetStream(t, srv.ClientURL())
		kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "live"})
		limitStream(t, js, "live", 50)
		ctx := context.Background()
		for _, k := range []string{"route.gone", "route.a", "route.b"} {
			if _, err := kv.Put(ctx, k, []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		const churn = 40000
		g := &gate{prefix: "churn.", open: make(chan struct{})}
		h := newHarness(t, js, "live", nil, t.TempDir())
		h.cfg.SetHooks(hooks)
		h.cfg.Transform = g
		h.start()
		h.waitSynced(3)
		time.Sleep(200 * time.Millisecond) // a few guard checks at the synced frontier
		// More than the consumer reads ahead, then the delete, then enough
		// to evict it before the consumer gets there.
		putAll(t, js, "live", churn, "churn.", "c")
		if err := kv.Delete(ctx, "route.gone"); err != nil {
			t.Fatal(err)
		}
		putAll(t, js, "live", 200, "late.", "l")
		first, last := lastSeq(t, js, "live")
		if first <= churn+4 {
			t.Fatalf("setup: the delete (seq %d) was not evicted: first_seq %d", churn+4, first)
		}
		close(g.open)
		h.waitSynced(last)
		_, held := h.contents()["route.gone"]
		if defended {
			if held {
				t.Fatal("the fold still holds route.gone after retention passed its running watch")
			}
			diff(t, h.contents(), testenv.Contents(t, kv, ""))
			h.verified()
		} else if !held {
			t.Fatal("with the guard off the fold lost route.gone anyway: the scenario does not exercise the guard")
		}
	})
}

// TestBucketRecreated: the bucket is deleted and recreated, both while the
// fold is down and while it runs. Stream identity tells them apart.
func TestBucketRecreated(t *testing.T) {
	recreate := func(t *testing.T, js jetstream.JetStream, n int) jetstream.KeyValue {
		ctx := context.Background()
		if err := js.DeleteKeyValue(ctx, "re"); err != nil {
			t.Fatal(err)
		}
		kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "re"})
		for i := range n {
			if _, err := kv.Put(ctx, fmt.Sprintf("new.%d", i), []byte("fresh")); err != nil {
				t.Fatal(err)
			}
		}
		return kv
	}
	setup := func(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
		srv := testenv.NATS(t)
		_, js := testenv.JetStream(t, srv.ClientURL())
		kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "re"})
		for i := range 5 {
			if _, err := kv.Put(context.Background(), fmt.Sprintf("old.%d", i), []byte("stale")); err != nil {
				t.Fatal(err)
			}
		}
		return js, kv
	}
	t.Run("while-down", func(t *testing.T) {
		twins(t, fold.Hooks{NoRebuild: true}, func(t *testing.T, hooks fold.Hooks, defended bool) {
			js, _ := setup(t)
			dir := t.TempDir()
			h := newHarness(t, js, "re", nil, dir)
			h.start()
			h.waitSynced(5)
			h.stop()
			kv := recreate(t, js, 8) // more keys than the cursor: only identity can tell
			h2 := newHarness(t, js, "re", nil, dir)
			h2.cfg.SetHooks(hooks)
			h2.start()
			h2.waitSynced(8)
			got, want := h2.contents(), testenv.Contents(t, kv, "")
			_, stale := got["old.0"]
			if defended {
				diff(t, got, want)
				h2.verified()
			} else if !stale {
				t.Fatal("with identity checks off the fold converged anyway: the scenario does not exercise them")
			}
		})
	})
	t.Run("while-running", func(t *testing.T) {
		js, _ := setup(t)
		h := newHarness(t, js, "re", nil, t.TempDir())
		h.start()
		h.waitSynced(5)
		kv := recreate(t, js, 8)
		testenv.Eventually(t, 30*time.Second, "a rebuild onto the new bucket", func() bool {
			st := h.f.Status(context.Background())
			return st.Ready && st.Generation > 1 && st.Cursor >= 8
		})
		diff(t, h.contents(), testenv.Contents(t, kv, ""))
		h.verified()
	})
}

// TestQuietFilteredFoldOnChurningBucket: a fold of route.> whose keys were
// all deleted (and the markers purged) sits on a bucket whose other keys
// churn. Nothing in scope changes, yet the stream's first sequence moves far
// past the last revision in scope. With bookmarks the fold advances its
// cursor and never rebuilds, and still applies the rare route.* update
// published in between; without them it rebuilds over and over.
func TestQuietFilteredFoldOnChurningBucket(t *testing.T) {
	twins(t, fold.Hooks{NoBookmarks: true}, func(t *testing.T, hooks fold.Hooks, defended bool) {
		srv := testenv.NATS(t)
		_, js := testenv.JetStream(t, srv.ClientURL())
		kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "busy"})
		ctx := context.Background()
		putAll(t, js, "busy", 200, "other.", "x0-")
		if _, err := kv.Put(ctx, "route.a", []byte("doomed")); err != nil {
			t.Fatal(err)
		}
		if err := kv.Delete(ctx, "route.a"); err != nil {
			t.Fatal(err)
		}
		if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, js, "busy", []string{"route.>"}, t.TempDir())
		h.cfg.SetHooks(hooks)
		h.start()
		h.waitSynced(0)
		for round := 1; round <= 8; round++ {
			putAll(t, js, "busy", 200, "other.", fmt.Sprintf("x%d-", round))
			if round >= 5 {
				if _, err := kv.Put(ctx, "route.b", []byte(fmt.Sprint(round))); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(120 * time.Millisecond) // let the guard run between rounds
		}
		putAll(t, js, "busy", 200, "other.", "tail-")
		first, last := lastSeq(t, js, "busy")
		if !defended {
			testenv.Eventually(t, 30*time.Second, "a rebuild without bookmarks", func() bool {
				return h.f.Status(ctx).Generation > 1
			})
			return
		}
		st := h.waitSynced(last)
		if st.Generation != 1 {
			t.Errorf("the quiet fold was rebuilt (generation %d) although nothing in scope was lost", st.Generation)
		}
		if st.Cursor < first {
			t.Errorf("cursor %d is below the first retained sequence %d: a restart would expire", st.Cursor, first)
		}
		diff(t, h.contents(), map[string]string{"route.b": "8"})
		h.verified()
	})
}
