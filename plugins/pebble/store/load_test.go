package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/slipstreamkv/slipstream/sdk"
)

func mustStats(t *testing.T, s *Store) sdk.Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// dump returns every entry of s as "key=rev:value" lines.
func dump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	err := s.Scan(context.Background(), sdk.Range{}, func(e sdk.Entry) error {
		fmt.Fprintf(&b, "%q=%d:%q\n", e.Key, e.Revision, e.Value)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// hasRecord reports whether s's database holds key.
func hasRecord(t *testing.T, s *Store, key []byte) bool {
	t.Helper()
	_, err := get(s.db, key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// randomBatches returns batches over a small key space with puts (some
// empty, some repeated within a batch), deletes of present and absent keys,
// and overwrites with values of other sizes.
func randomBatches(seed uint64, n int, cursor uint64) []*sdk.Batch {
	r := rand.New(rand.NewPCG(seed, 1))
	var out []*sdk.Batch
	for range n {
		cursor++
		b := &sdk.Batch{Cursor: cursor, Meta: map[string][]byte{"cursor": fmt.Appendf(nil, "%d", cursor)}}
		for j := range r.IntN(300) {
			key := fmt.Appendf(nil, "k%03d", r.IntN(400))
			if r.IntN(4) == 0 {
				b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpDelete, Key: key})
				continue
			}
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: key,
				Value: bytes.Repeat([]byte{'v'}, r.IntN(60)), Revision: cursor*1000 + uint64(j)})
		}
		out = append(out, b)
	}
	return out
}

// TestLoadCountsMatchApply applies the same batches to a store as usual and
// to one under a bulk load: the contents and the stats must agree during the
// load (Stats counts), after EndLoad (the stats record) and after more
// batches applied the usual way. The load ingests its batches when a read
// needs them (every tenth batch), or before every batch: a buffer of one
// byte is full after any batch.
func TestLoadCountsMatchApply(t *testing.T) {
	for _, buffer := range []int{64 << 20, 1} {
		t.Run(fmt.Sprintf("buffer=%d", buffer), func(t *testing.T) {
			testLoadCountsMatchApply(t, buffer)
		})
	}
}

func testLoadCountsMatchApply(t *testing.T, buffer int) {
	ctx := context.Background()
	plain := openStore(t, t.TempDir(), `{"sync": false}`)
	defer plain.Close(ctx)
	loaded := openStore(t, t.TempDir(), `{"sync": false}`)
	defer loaded.Close(ctx)
	loaded.loadBuffer = buffer
	if err := loaded.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	if hasRecord(t, loaded, statsKey) || !hasRecord(t, loaded, loadingKey) {
		t.Fatal("BeginLoad did not replace the stats record by the loading record")
	}
	for i, b := range randomBatches(1, 40, 0) {
		for _, s := range []*Store{plain, loaded} {
			if err := s.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if i%10 == 9 {
			if got, want := mustStats(t, loaded), mustStats(t, plain); got.Keys != want.Keys || got.Bytes != want.Bytes {
				t.Fatalf("after batch %d, Stats during the load = %d keys, %d bytes; want %d keys, %d bytes", i, got.Keys, got.Bytes, want.Keys, want.Bytes)
			}
		}
	}
	if hasRecord(t, loaded, statsKey) {
		t.Fatal("an Apply during the load wrote the stats record")
	}
	if err := loaded.EndLoad(ctx); err != nil {
		t.Fatal(err)
	}
	if hasRecord(t, loaded, loadingKey) {
		t.Fatal("EndLoad left the loading record")
	}
	check := func(when string) {
		t.Helper()
		got, want := mustStats(t, loaded), mustStats(t, plain)
		if got.Keys == 0 || got.Keys != want.Keys || got.Bytes != want.Bytes {
			t.Fatalf("%s: Stats = %d keys, %d bytes; want %d keys, %d bytes", when, got.Keys, got.Bytes, want.Keys, want.Bytes)
		}
		if g, w := dump(t, loaded), dump(t, plain); g != w {
			t.Fatalf("%s: contents differ:\n%s\nwant:\n%s", when, g, w)
		}
	}
	check("after EndLoad")
	for _, b := range randomBatches(2, 10, 40) {
		for _, s := range []*Store{plain, loaded} {
			if err := s.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	check("after more batches")
}

// TestLoadSurvivesReopen checks that Open reports a load until EndLoad, and
// that Apply after a reopen still loads.
func TestLoadSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, "{}")
	if err := s.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	put := func(cursor uint64, key string) {
		t.Helper()
		b := &sdk.Batch{Cursor: cursor, Meta: map[string][]byte{"m": []byte(key)},
			Mutations: []sdk.Mutation{{Op: sdk.OpPut, Key: []byte(key), Value: []byte("value"), Revision: cursor}}}
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	reopen := func(wantLoading bool, wantCursor uint64) {
		t.Helper()
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := s.Open(ctx, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Loading != wantLoading || st.Cursor != wantCursor {
			t.Fatalf("Open = loading %v, cursor %d; want loading %v, cursor %d", st.Loading, st.Cursor, wantLoading, wantCursor)
		}
	}
	reopen(true, 0) // begun, nothing applied
	put(1, "a")
	reopen(true, 1)
	put(2, "bb")
	if hasRecord(t, s, statsKey) {
		t.Fatal("Apply after a reopen during a load wrote the stats record")
	}
	if st := mustStats(t, s); st.Keys != 2 || st.Bytes != 1+5+2+5 {
		t.Fatalf("Stats during the load = %+v; want 2 keys, 13 bytes", st)
	}
	if err := s.EndLoad(ctx); err != nil {
		t.Fatal(err)
	}
	reopen(false, 2)
	if st := mustStats(t, s); st.Keys != 2 || st.Bytes != 13 {
		t.Fatalf("Stats after the load = %+v; want 2 keys, 13 bytes", st)
	}
	if err := s.EndLoad(ctx); err != nil { // not loading: a no-op
		t.Fatal(err)
	}
	put(3, "c")
	if st := mustStats(t, s); st.Keys != 3 || st.Bytes != 19 {
		t.Fatalf("Stats after a second EndLoad and a put = %+v; want 3 keys, 19 bytes", st)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBeginLoadRefusesNonEmptyStore checks that a store holding a cursor or
// a key refuses to load, and is left as it was.
func TestBeginLoadRefusesNonEmptyStore(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		b    sdk.Batch
	}{
		{"cursor only", sdk.Batch{Cursor: 3, Mutations: []sdk.Mutation{{Op: sdk.OpDelete, Key: []byte("k")}}}},
		{"keys at cursor 0", sdk.Batch{Mutations: []sdk.Mutation{{Op: sdk.OpPut, Key: []byte("k")}}}},
		{"keys and cursor", sdk.Batch{Cursor: 1, Mutations: []sdk.Mutation{{Op: sdk.OpPut, Key: []byte("k"), Value: []byte("v")}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, "{}")
			if err := s.Apply(ctx, &tt.b); err != nil {
				t.Fatal(err)
			}
			before := mustStats(t, s)
			err := s.BeginLoad(ctx)
			if err == nil || !strings.Contains(err.Error(), "not empty") {
				t.Fatalf("BeginLoad = %v; want a refusal", err)
			}
			if after := mustStats(t, s); after.Keys != before.Keys || after.Bytes != before.Bytes || !hasRecord(t, s, statsKey) || hasRecord(t, s, loadingKey) {
				t.Fatalf("a refused BeginLoad changed the store: stats %+v, then %+v", before, after)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if st, err := s.Open(ctx, dir, nil); err != nil || st.Loading {
				t.Fatalf("Open after a refused BeginLoad = %+v, %v; want not loading", st, err)
			}
			s.Close(ctx)
		})
	}
}

// TestBeginLoadTwice checks that BeginLoad on an empty store that is
// already loading is accepted, and refused once the load holds keys.
func TestBeginLoadTwice(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), "{}")
	defer s.Close(ctx)
	for range 2 {
		if err := s.BeginLoad(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(ctx, &sdk.Batch{Cursor: 1, Mutations: []sdk.Mutation{{Op: sdk.OpPut, Key: []byte("k")}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginLoad(ctx); err == nil {
		t.Fatal("BeginLoad on a loading store that holds a key succeeded")
	}
	if !s.loading || !hasRecord(t, s, loadingKey) {
		t.Fatal("a refused BeginLoad ended the load")
	}
}

// TestEndLoadCanceled checks that an EndLoad given up commits nothing.
func TestEndLoadCanceled(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), "{}")
	defer s.Close(ctx)
	if err := s.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, randomBatches(3, 1, 0)[0]); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.EndLoad(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("EndLoad with a canceled context = %v", err)
	}
	if !s.loading || !hasRecord(t, s, loadingKey) || hasRecord(t, s, statsKey) {
		t.Fatal("a canceled EndLoad changed the store")
	}
	if err := s.EndLoad(ctx); err != nil {
		t.Fatal(err)
	}
	if s.loading || hasRecord(t, s, loadingKey) || !hasRecord(t, s, statsKey) {
		t.Fatal("EndLoad did not end the load")
	}
}

// The store's capabilities are its interfaces.
var (
	_ sdk.Loader    = (*Store)(nil)
	_ sdk.Compacter = (*Store)(nil)
)

func TestLoadCallsOnClosedStore(t *testing.T) {
	ctx := context.Background()
	s := New()
	if err := s.BeginLoad(ctx); !errors.Is(err, sdk.ErrClosed) {
		t.Fatalf("BeginLoad before Open = %v; want ErrClosed", err)
	}
	if err := s.EndLoad(ctx); !errors.Is(err, sdk.ErrClosed) {
		t.Fatalf("EndLoad before Open = %v; want ErrClosed", err)
	}
}

// TestCountAfterLoad holds the count a load leaves to countAfterLoad while
// batches go on, and checks the stats against a store that never loaded:
// during the count (Stats counts), after it (the record it commits: the
// count plus what the batches added since EndLoad), and after a Close in
// the middle of a count, which Open starts again.
func TestCountAfterLoad(t *testing.T) {
	ctx := context.Background()
	plain := openStore(t, t.TempDir(), `{"sync": false}`)
	defer plain.Close(ctx)
	loaded := openStore(t, t.TempDir(), `{"sync": false}`)
	defer func() { loaded.Close(ctx) }()
	both := func(batches []*sdk.Batch) {
		t.Helper()
		for _, b := range batches {
			for _, s := range []*Store{plain, loaded} {
				if err := s.Apply(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	check := func(when string, counting bool) {
		t.Helper()
		if got := hasRecord(t, loaded, countingKey); got != counting {
			t.Fatalf("%s: counting record present: %v, want %v", when, got, counting)
		}
		want := mustStats(t, plain)
		if counting {
			// Stats waits for the count (held here), and gives up with
			// its context; the counts it would read without a count
			// running in the process are exact.
			canceled, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := loaded.Stats(canceled); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s: Stats with a count held and a canceled context: %v; want it to wait for the count", when, err)
			}
			c, err := storedCounts(ctx, loaded.db)
			if err != nil || want.Keys == 0 || c.keys != want.Keys || c.bytes != want.Bytes {
				t.Fatalf("%s: counts = %+v (%v); want %d keys, %d bytes", when, c, err, want.Keys, want.Bytes)
			}
			return
		}
		got := mustStats(t, loaded)
		if want.Keys == 0 || got.Keys != want.Keys || got.Bytes != want.Bytes {
			t.Fatalf("%s: Stats = %d keys, %d bytes; want %d keys, %d bytes", when, got.Keys, got.Bytes, want.Keys, want.Bytes)
		}
		rec, err := decodeCounts(mustGet(t, loaded, statsKey))
		if err != nil || rec.keys != want.Keys || rec.bytes != want.Bytes {
			t.Fatalf("%s: stats record = %+v (%v); want %d keys, %d bytes", when, rec, err, want.Keys, want.Bytes)
		}
	}

	loaded.countPause = make(chan struct{})
	if err := loaded.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	both(randomBatches(1, 30, 0))
	if err := loaded.EndLoad(ctx); err != nil {
		t.Fatal(err)
	}
	check("after EndLoad, the count held", true)
	// Deletes and overwrites of loaded keys take the stats record below
	// zero before the count lands.
	both(randomBatches(2, 10, 30))
	check("after more batches, the count held", true)
	close(loaded.countPause)
	loaded.countWG.Wait()
	check("after the count", false)
	both(randomBatches(3, 5, 40))
	check("after batches that follow the count", false)

	// A count interrupted by Close starts again at Open.
	for _, s := range []*Store{plain, loaded} {
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	plain = openStore(t, t.TempDir(), `{"sync": false}`)
	dir := t.TempDir()
	loaded = openStore(t, dir, `{"sync": false}`)
	loaded.countPause = make(chan struct{})
	if err := loaded.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	both(randomBatches(4, 20, 0))
	if err := loaded.EndLoad(ctx); err != nil {
		t.Fatal(err)
	}
	both(randomBatches(5, 5, 20))
	if err := loaded.Close(ctx); err != nil {
		t.Fatal(err)
	}
	loaded = New()
	loaded.countPause = make(chan struct{})
	if _, err := loaded.Open(ctx, dir, []byte(`{"sync": false}`)); err != nil {
		t.Fatal(err)
	}
	check("reopened in the middle of a count", true)
	both(randomBatches(6, 5, 25))
	close(loaded.countPause)
	loaded.countWG.Wait()
	check("after the count Open started again", false)
}

// mustGet returns the value of the store record key.
func mustGet(t *testing.T, s *Store, key []byte) []byte {
	t.Helper()
	v, err := get(s.db, key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
