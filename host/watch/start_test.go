package watch_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/watch"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// TestRelistSurvivesItsOldestKeysRewritten: a re-list has delivered 10 of
// 100 keys when the 50 oldest are purged, which moves the stream's first
// sequence far past what was delivered. With one message per key that
// loses nothing (the purge markers follow), so the guard holds and the
// fold ends equal to the bucket. With more history per key the guard
// fires instead: there it cannot tell.
func TestRelistSurvivesItsOldestKeysRewritten(t *testing.T) {
	for _, history := range []uint8{1, 2} {
		t.Run(fmt.Sprintf("history=%d", history), func(t *testing.T) {
			ctx := context.Background()
			srv := testenv.NATS(t)
			_, js := testenv.JetStream(t, srv.ClientURL())
			kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "b", History: history})
			for i := range 100 {
				if _, err := kv.Put(ctx, fmt.Sprintf("k%03d", i), []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			w, err := watch.Start(ctx, js, watch.Config{Bucket: "b"})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			fold := map[string]string{}
			apply := func(u watch.Update) {
				if u.Op == sdk.OpPut {
					fold[string(u.Key)] = string(u.Value)
				} else {
					delete(fold, string(u.Key))
				}
			}
			for range 10 {
				u, err := w.Next(ctx, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				apply(u)
			}
			for i := range 50 {
				if err := kv.Purge(ctx, fmt.Sprintf("k%03d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if s, err := js.Stream(ctx, "KV_b"); err != nil || s.CachedInfo().State.FirstSeq <= 11 {
				t.Fatalf("setup: the first sequence did not pass the 10 delivered (%v)", err)
			}
			bookmark, err := w.Check(ctx)
			if history > 1 {
				if !errors.Is(err, watch.ErrCursorExpired) {
					t.Fatalf("Check: %v, want %v", err, watch.ErrCursorExpired)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v; nothing in the re-list was lost", err)
			}
			// The fold may commit a bookmark as its cursor: it must not
			// pass what was delivered while the re-list is under way.
			if bookmark != 10 {
				t.Fatalf("bookmark %d after 10 of the re-list's revisions, want 10", bookmark)
			}
			s, err := js.Stream(ctx, "KV_b")
			if err != nil {
				t.Fatal(err)
			}
			for last := s.CachedInfo().State.LastSeq; ; {
				u, err := w.Next(ctx, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				apply(u)
				if u.Revision == last {
					break
				}
			}
			if _, err := w.Check(ctx); err != nil {
				t.Fatalf("Check after catching up: %v", err)
			}
			if want := testenv.Contents(t, kv, ""); !maps.Equal(fold, want) {
				t.Fatalf("fold has %d keys, bucket %d: %v", len(fold), len(want), fold)
			}
		})
	}
}

// TestNextEndsWithItsContext: a Next waiting for updates that do not come
// returns its context's error soon after the context ends, and an empty
// wait returns ErrNoUpdate.
func TestNextEndsWithItsContext(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "b"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := watch.Start(ctx, js, watch.Config{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := w.Next(ctx, 50*time.Millisecond); !errors.Is(err, watch.ErrNoUpdate) {
		t.Fatalf("Next on an empty bucket: %v, want %v", err, watch.ErrNoUpdate)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = w.Next(ctx, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v, want %v", err, context.Canceled)
	}
	// A bound far above any scheduling delay, far below the wait.
	if waited := time.Since(start); waited > 30*time.Second {
		t.Fatalf("Next returned %v after its context ended, not at once", waited)
	}
}

// TestStartGate: while a consumer creation of the fold's watches is
// outstanding (the gate is held), Start fails at once and creates nothing;
// once the creation is over, Start works, and the gate is free again after
// it.
func TestStartGate(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "b"})
	ctx := context.Background()
	gate := make(chan struct{}, 1)
	gate <- struct{}{} // an earlier creation still running
	if w, err := watch.Start(ctx, js, watch.Config{Bucket: "b", StartGate: gate}); err == nil {
		w.Stop()
		t.Fatal("Start succeeded while another creation held the gate")
	} else if !strings.Contains(err.Error(), "still outstanding") {
		t.Fatalf("Start with the gate held: %v; want the outstanding creation named", err)
	}
	s, err := js.Stream(ctx, "KV_b")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("a refused Start left %d consumers", n)
	}
	<-gate // the earlier creation ended
	for range 2 {
		w, err := watch.Start(ctx, js, watch.Config{Bucket: "b", StartGate: gate})
		if err != nil {
			t.Fatalf("Start with the gate free: %v", err)
		}
		w.Stop()
	}
	if len(gate) != 0 {
		t.Fatal("Start kept the gate after its creation ended")
	}
}
