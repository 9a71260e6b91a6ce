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
			s, dir := openWith(t, tc.config)
			db, wal := filepath.Join(dir, "fold.db"), filepath.Join(dir, "fold.db-wal")
			initial := fileSize(t, db)
			var cursor uint64
			for fileSize(t, wal)/pageFrame < 100 {
				if err := s.Apply(ctx, spreadBatch(&cursor, 20, 500, 100003)); err != nil {
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
			e, err := s.Get(ctx, spreadKey(cursor, 100003))
			if err != nil || e.Revision != cursor {
				t.Fatalf("last key: %+v, %v; want revision %d", e, err, cursor)
			}
			if st.Keys != cursor {
				t.Fatalf("%d keys, want %d", st.Keys, cursor)
			}
		})
	}
}

// pageFrame is the size of a WAL frame: its header and a 4 KiB page.
const pageFrame = 24 + 4096

// openWith opens a store in a new directory with config, closed when the
// test ends.
func openWith(t *testing.T, config string) (*store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s := store.New()
	if _, err := s.Open(context.Background(), dir, []byte(config)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, dir
}

// spreadBatch is n puts of values of size bytes, of the next n cursors
// after *cursor (which it advances), whose keys spread over modulus.
func spreadBatch(cursor *uint64, n, size int, modulus uint64) *sdk.Batch {
	b := &sdk.Batch{}
	for range n {
		*cursor++
		b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut,
			Key: spreadKey(*cursor, modulus), Value: make([]byte, size), Revision: *cursor})
	}
	b.Cursor = *cursor
	return b
}

func spreadKey(cursor, modulus uint64) []byte {
	return fmt.Appendf(nil, "k%08d", cursor*7919%modulus)
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
	s, dir := openWith(t, `{"wal_autocheckpoint": 200}`)
	wal := filepath.Join(dir, "fold.db-wal")
	var cursor uint64
	peak := int64(0)
	for range 1500 {
		if err := s.Apply(ctx, spreadBatch(&cursor, 50, 200, 1000003)); err != nil {
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
