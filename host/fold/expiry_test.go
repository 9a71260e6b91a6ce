package fold_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// expireCursor overwrites every key but skip until the stream's first
// sequence is past cursor+1.
func expireCursor(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue, bucket string, cursor uint64, keys []string) {
	t.Helper()
	ctx := context.Background()
	// Twice: once to supersede what the fold saw, once more so that the
	// first retained sequence moves past the first message after the cursor.
	for range 2 {
		for _, k := range keys {
			if _, err := kv.Put(ctx, k, []byte("new-"+k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, _ := lastSeq(t, js, bucket)
	if first <= cursor+1 {
		t.Fatalf("setup: first sequence %d did not pass cursor+1 = %d", first, cursor+1)
	}
}

// TestSilentClamp pins the NATS behaviour slipstream exists to catch: a
// consumer started below the first retained sequence gets no error and
// silently starts later; the host, resuming from the same cursor, reports
// the expiry and rebuilds.
func TestSilentClamp(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "clamp"})
	ctx := context.Background()
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("k%d", i))
		if _, err := kv.Put(ctx, keys[i], []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	h := newHarness(t, js, "clamp", nil, dir)
	h.start()
	st := h.waitSynced(10)
	h.stop()
	cursor := st.Cursor
	expireCursor(t, js, kv, "clamp", cursor, keys)
	first, _ := lastSeq(t, js, "clamp")

	// The raw consumer: no error, and the first message is not cursor+1.
	cons, err := js.OrderedConsumer(ctx, "KV_clamp", jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: cursor + 1,
	})
	if err != nil {
		t.Fatalf("raw consumer below first_seq: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("raw consumer: %v", err)
	}
	md, _ := msg.Metadata()
	if md.Sequence.Stream != first || md.Sequence.Stream == cursor+1 {
		t.Fatalf("raw consumer started at %d; want the silent clamp to first_seq %d", md.Sequence.Stream, first)
	}

	h2 := newHarness(t, js, "clamp", nil, dir)
	h2.start()
	testenv.Eventually(t, 30*time.Second, "a rebuild into generation 2", func() bool {
		st := h2.f.Status(ctx)
		return st.Ready && st.Generation == 2
	})
	diff(t, h2.contents(), testenv.Contents(t, kv, ""))
	h2.verified()
}

// TestExpiredGap: a fold stopped holding route.gone; while it is down the
// key is deleted, its subject purged so no marker survives, and every other
// key overwritten until first_seq > cursor+1. On restart the fold must not
// hold route.gone. The twin with the rebuild switched off keeps it, which
// proves the test can fail.
func TestExpiredGap(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noRebuild bool
		wantGone  bool
	}{
		{"rebuild", false, true},
		{"rebuild-off", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.NATS(t)
			_, js := testenv.JetStream(t, srv.ClientURL())
			kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "gap"})
			ctx := context.Background()
			keys := []string{"route.a", "route.b", "route.c", "route.d"}
			for _, k := range append(keys, "route.gone") {
				if _, err := kv.Put(ctx, k, []byte("old-"+k)); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			h := newHarness(t, js, "gap", nil, dir)
			h.start()
			st := h.waitSynced(5)
			if _, ok := h.contents()["route.gone"]; !ok {
				t.Fatal("setup: fold lacks route.gone")
			}
			h.stop()

			if err := kv.Delete(ctx, "route.gone"); err != nil {
				t.Fatal(err)
			}
			s, err := js.Stream(ctx, "KV_gap")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Purge(ctx, jetstream.WithPurgeSubject("$KV.gap.route.gone")); err != nil {
				t.Fatal(err)
			}
			expireCursor(t, js, kv, "gap", st.Cursor, keys)
			_, last := lastSeq(t, js, "gap")

			h2 := newHarness(t, js, "gap", nil, dir)
			h2.cfg.SetHooks(fold.Hooks{NoRebuild: tc.noRebuild})
			h2.start()
			h2.waitSynced(last)
			got := h2.contents()
			_, held := got["route.gone"]
			if held == tc.wantGone {
				t.Fatalf("after restart the fold holds route.gone = %v; want %v", held, !tc.wantGone)
			}
			for _, k := range keys {
				if got[k] != "new-"+k {
					t.Errorf("fold has %s=%q, want the new value", k, got[k])
				}
			}
			if !tc.noRebuild {
				diff(t, got, testenv.Contents(t, kv, ""))
				h2.verified()
			}
		})
	}
}
