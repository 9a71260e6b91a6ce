package fold_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// TestMarkersLostWhileAway: a fold is stopped holding route.gone; while it
// is down, route.gone is deleted and the delete marker then disappears in a
// way replay cannot show. Each case ends with the fold equal to the bucket,
// and each twin, with that defence off, ends diverged.
func TestMarkersLostWhileAway(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lose deletes route.gone and makes its marker vanish.
		lose func(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue)
		off  fold.Hooks
	}{
		{
			name: "purged-marker",
			lose: func(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue) {
				ctx := context.Background()
				if err := kv.Delete(ctx, "route.gone"); err != nil {
					t.Fatal(err)
				}
				s, err := js.Stream(ctx, "KV_away")
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Purge(ctx, jetstream.WithPurgeSubject("$KV.away.route.gone")); err != nil {
					t.Fatal(err)
				}
			},
			off: fold.Hooks{NoReconcile: true},
		},
		{
			name: "purge-deletes",
			lose: func(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue) {
				ctx := context.Background()
				if err := kv.Delete(ctx, "route.gone"); err != nil {
					t.Fatal(err)
				}
				if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
					t.Fatal(err)
				}
			},
			off: fold.Hooks{NoReconcile: true},
		},
		{
			name: "evicted-marker",
			lose: func(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue) {
				ctx := context.Background()
				if err := kv.Delete(ctx, "route.gone"); err != nil {
					t.Fatal(err)
				}
				limitStream(t, js, "away", 5)
				putAll(t, js, "away", 20, "route.x", "evict")
			},
			off: fold.Hooks{NoRebuild: true, NoReconcile: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			twins(t, tc.off, func(t *testing.T, hooks fold.Hooks, defended bool) {
				srv := testenv.NATS(t)
				_, js := testenv.JetStream(t, srv.ClientURL())
				kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "away"})
				ctx := context.Background()
				for _, k := range []string{"route.gone", "route.a", "route.b"} {
					if _, err := kv.Put(ctx, k, []byte("v")); err != nil {
						t.Fatal(err)
					}
				}
				dir := t.TempDir()
				h := newHarness(t, js, "away", nil, dir)
				h.start()
				h.waitSynced(3)
				h.stop()
				tc.lose(t, js, kv)
				if _, err := kv.Put(ctx, "route.a", []byte("after")); err != nil {
					t.Fatal(err)
				}
				first, last := lastSeq(t, js, "away")
				t.Logf("stream first %d last %d", first, last)

				h2 := newHarness(t, js, "away", nil, dir)
				h2.cfg.SetHooks(hooks)
				h2.cfg.TombstoneHorizon = time.Nanosecond // every restart is "away too long"
				h2.start()
				h2.waitSynced(last)
				got := h2.contents()
				_, held := got["route.gone"]
				if defended {
					diff(t, got, testenv.Contents(t, kv, ""))
					h2.verified()
					return
				}
				if !held {
					t.Fatal("with the defence off the fold lost route.gone anyway: the scenario does not exercise it")
				}
			})
		})
	}
}

// tamper edits a stopped fold's SQLite file behind its back: adds a key
// the bucket never had and removes one it has.
func tamper(t *testing.T, dir string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "CURRENT"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", filepath.Join(dir, strings.TrimSpace(string(raw)), "fold.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`INSERT INTO kv (key, value, revision) VALUES (CAST('bogus' AS BLOB), CAST('x' AS BLOB), 3)`,
		`DELETE FROM kv WHERE key = CAST('k07' AS BLOB)`,
		`UPDATE kv SET revision = 1 WHERE key = CAST('k09' AS BLOB)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReconcileRepairsTamperedFold: a fold whose store was edited behind its
// back is diverged (Verify says so), and a requested reconcile puts it
// right (Verify says so too).
func TestReconcileRepairsTamperedFold(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "req"})
	ctx := context.Background()
	for i := range 20 {
		if _, err := kv.Put(ctx, fmt.Sprintf("k%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	h := newHarness(t, js, "req", nil, dir)
	h.start()
	h.waitSynced(20)
	h.stop()
	tamper(t, dir)

	h2 := newHarness(t, js, "req", nil, dir)
	h2.cfg.TombstoneHorizon = -1
	h2.start()
	h2.waitSynced(20)
	sum, diffs, err := h2.f.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stale != 1 || sum.Missing != 1 || sum.Changed != 1 || len(diffs) != 3 {
		t.Fatalf("verify of the tampered fold: %+v %+v; want one stale, one missing, one changed", sum, diffs)
	}
	h2.f.RequestReconcile()
	testenv.Eventually(t, 10*time.Second, "the reconcile to repair the fold", func() bool {
		sum, _, err := h2.f.Verify(ctx)
		return err == nil && !sum.Diverged()
	})
	diff(t, h2.contents(), testenv.Contents(t, kv, ""))
}
