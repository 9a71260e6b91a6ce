package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

// TestBackgroundCheckpoint shows the WAL copied into the database by the
// store's own checkpointer, with no commit doing it: writes stop as soon as
// the WAL holds wal_autocheckpoint (100) pages, far below the size at which
// the writer would checkpoint by itself, and the database file grows. With
// wal_autocheckpoint 0 (no checkpoints) it does not.
func TestBackgroundCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		config string
		copied bool
		wait   time.Duration
	}{
		{`{"wal_autocheckpoint": 100}`, true, 20 * time.Second},
		{`{"wal_autocheckpoint": 0}`, false, time.Second},
	} {
		t.Run(tc.config, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := store.New()
			if _, err := s.Open(ctx, dir, []byte(tc.config)); err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			db, wal := filepath.Join(dir, "fold.db"), filepath.Join(dir, "fold.db-wal")
			initial := fileSize(t, db)
			const pageFrame = 24 + 4096 // a WAL frame: its header and a page
			var cursor uint64
			for fileSize(t, wal)/pageFrame < 100 {
				b := &sdk.Batch{}
				for range 20 {
					cursor++
					b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut,
						Key: fmt.Appendf(nil, "k%08d", cursor*7919%100003), Value: make([]byte, 500), Revision: cursor})
				}
				b.Cursor = cursor
				if err := s.Apply(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			if frames := fileSize(t, wal) / pageFrame; frames >= 400 {
				t.Fatalf("the WAL reached %d pages, the writer's own limit; the test needs fewer per batch", frames)
			}
			deadline := time.Now().Add(tc.wait)
			for fileSize(t, db) == initial && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if copied := fileSize(t, db) > initial; copied != tc.copied {
				t.Fatalf("database file %d bytes, %d before the writes: copied = %v, want %v",
					fileSize(t, db), initial, copied, tc.copied)
			}
			// The data is whole either way.
			st, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e, err := s.Get(ctx, fmt.Appendf(nil, "k%08d", cursor*7919%100003))
			if err != nil || e.Revision != cursor {
				t.Fatalf("last key: %+v, %v; want revision %d", e, err, cursor)
			}
			if st.Keys != cursor {
				t.Fatalf("%d keys, want %d", st.Keys, cursor)
			}
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestWALBoundedUnderSustainedWrites: with writes that never pause, the
// background checkpoints alone would let the WAL grow for as long as the
// writes last; the writer's own checkpoint at four times wal_autocheckpoint
// keeps the WAL file within that and one batch.
func TestWALBoundedUnderSustainedWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := store.New()
	if _, err := s.Open(ctx, dir, []byte(`{"wal_autocheckpoint": 200}`)); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	const pageFrame = 24 + 4096
	wal := filepath.Join(dir, "fold.db-wal")
	var cursor uint64
	peak := int64(0)
	for range 1500 {
		b := &sdk.Batch{}
		for range 50 {
			cursor++
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut,
				Key: fmt.Appendf(nil, "k%08d", cursor*7919%1000003), Value: make([]byte, 200), Revision: cursor})
		}
		b.Cursor = cursor
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, fileSize(t, wal)/pageFrame)
	}
	// 800 pages is the writer's limit; a batch of 50 keys dirties about
	// 60 pages, and much less than 200 even where every key splits a page.
	if peak > 800+200 {
		t.Fatalf("the WAL reached %d pages; want at most the writer's limit (800) and one batch", peak)
	}
	t.Logf("peak WAL %d pages", peak)
}
