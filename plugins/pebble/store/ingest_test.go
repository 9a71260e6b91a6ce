package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/slipstreamkv/slipstream/sdk"
)

// sortedBatches returns n batches of per keys each, in key order across
// them, as an artifact's import sends them.
func sortedBatches(n, per int) []*sdk.Batch {
	var out []*sdk.Batch
	for i := range n {
		b := &sdk.Batch{Cursor: uint64(i + 1)}
		for j := range per {
			k := i*per + j
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "key/%08d", k),
				Value: fmt.Appendf(nil, "%0200d", k), Revision: uint64(k + 1)})
		}
		out = append(out, b)
	}
	return out
}

// TestLoadInKeyOrderLandsInTheBottomLevel checks that a load in key order,
// ingested many times, leaves its data in pebble's bottom level and nothing
// in L0: the ingests' tables do not overlap, so no compaction rewrites them.
func TestLoadInKeyOrderLandsInTheBottomLevel(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, `{"sync": false}`)
	s.loadBuffer = 256 << 10 // about a thousand entries per ingest
	if err := s.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	const batches, per = 40, 500
	for _, b := range sortedBatches(batches, per) {
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if s.ingests < 10 {
		t.Fatalf("%d ingests; want one about every 256 KiB", s.ingests)
	}
	if err := s.EndLoad(ctx); err != nil {
		t.Fatal(err)
	}
	m := s.db.Metrics()
	last := len(m.Levels) - 1
	if m.Levels[last].TablesCount < int64(s.ingests)-1 {
		t.Errorf("bottom level holds %d tables after %d ingests; want one per ingest (levels: %s)", m.Levels[last].TablesCount, s.ingests, m)
	}
	// The state tables overlap each other, and the memtable flushes, so
	// some small tables go elsewhere; the data must not.
	var above int64
	for l := range last {
		above += m.Levels[l].TablesSize
	}
	if above > m.Levels[last].TablesSize/20 {
		t.Errorf("%d bytes in the levels above the bottom one, against %d in it; want the data at the bottom (levels: %s)", above, m.Levels[last].TablesSize, m)
	}
	for _, k := range []int{0, 1234, batches*per - 1} {
		e, err := s.Get(ctx, fmt.Appendf(nil, "key/%08d", k))
		if err != nil || e.Revision != uint64(k+1) || string(e.Value) != fmt.Sprintf("%0200d", k) {
			t.Fatalf("Get key %d = %+v, %v", k, e, err)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dir, ingestDir)); err != nil || len(ents) != 0 {
		t.Fatalf("the ingest directory holds %d names (%v); want them removed after each ingest", len(ents), err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if st.Cursor != batches || st.Loading {
		t.Fatalf("reopened: cursor %d, loading %v; want cursor %d, not loading", st.Cursor, st.Loading, batches)
	}
}

// TestFailedIngestKeepsThePendingBatches makes an ingest fail (its
// directory's name is taken by a file) and checks that the batches it
// held are ingested by the next attempt, none lost, and that the batch
// whose Apply failed is left out.
func TestFailedIngestKeepsThePendingBatches(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, `{"sync": false}`)
	defer s.Close(ctx)
	s.loadBuffer = 1 // every Apply ingests the batch before its own
	if err := s.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	bs := sortedBatches(4, 10)
	for _, b := range bs[:2] {
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	block := filepath.Join(dir, ingestDir)
	if err := os.RemoveAll(block); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(block, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, bs[2]); err == nil {
		t.Fatal("Apply with the ingest directory blocked succeeded")
	}
	if _, err := s.Get(ctx, []byte("key/00000015")); err == nil {
		t.Fatal("Get with the ingest directory blocked succeeded; want the ingest's error")
	}
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, bs[3]); err != nil {
		t.Fatal(err)
	}
	if err := s.EndLoad(ctx); err != nil {
		t.Fatal(err)
	}
	for k := range 40 {
		_, err := s.Get(ctx, fmt.Appendf(nil, "key/%08d", k))
		if inFailed := k >= 20 && k < 30; inFailed != (err != nil) {
			t.Errorf("Get key %d: %v (in the failed batch: %v)", k, err, inFailed)
		}
	}
	if got := mustStats(t, s).Keys; got != 30 {
		t.Errorf("Stats = %d keys; want 30", got)
	}
}

// TestOpenRemovesAnInterruptedIngest checks that tables left in the ingest
// directory by a crash are removed when the store opens.
func TestOpenRemovesAnInterruptedIngest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, "{}")
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(dir, ingestDir, "3-data.sst")
	if err := os.MkdirAll(filepath.Dir(left), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, []byte("half a table"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, dir, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("after Open, the interrupted ingest's table: %v; want it removed", err)
	}
}

// TestSortEntriesOrdersByKeyThenArrival checks the sort's shortcut (eight
// bytes after the shared prefix) against a plain sort, over keys that
// share prefixes, end inside the eight bytes, hold zero bytes, or repeat.
func TestSortEntriesOrdersByKeyThenArrival(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for round := range 200 {
		var p pending
		b := &sdk.Batch{}
		shared := []string{"", "route.t", "route.t0042.svc-"}[round%3]
		for range 1 + r.IntN(300) {
			k := []byte(shared)
			for range r.IntN(12) {
				k = append(k, "ab\x00\xff"[r.IntN(4)])
			}
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: k, Value: []byte("v")})
		}
		if err := p.add(b); err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(p.ents)
		slices.SortStableFunc(want, func(a, b entry) int { return bytes.Compare(p.keyOf(&a), p.keyOf(&b)) })
		p.sortEntries()
		for i := range want {
			if p.ents[i].seq != want[i].seq {
				t.Fatalf("round %d: entry %d is mutation %d (%q); want mutation %d (%q)", round, i,
					p.ents[i].seq, p.keyOf(&p.ents[i]), want[i].seq, p.keyOf(&want[i]))
			}
		}
	}
}

// BenchmarkSortEntries sorts a load buffer of 250k keys of one shape in
// the stream's order (the bench's keys), with the eight-byte shortcut and,
// as the reference, comparing whole keys.
func BenchmarkSortEntries(b *testing.B) {
	const n = 250_000
	r := rand.New(rand.NewPCG(1, 2))
	batch := &sdk.Batch{}
	for _, i := range r.Perm(n) {
		batch.Mutations = append(batch.Mutations, sdk.Mutation{Op: sdk.OpPut,
			Key: fmt.Appendf(nil, "route.t%04d.svc-%05d.endpoint.%08d", i%10000, i/10%100000, i), Value: []byte("v")})
	}
	var p pending
	if err := p.add(batch); err != nil {
		b.Fatal(err)
	}
	arrival := slices.Clone(p.ents)
	b.Run("shortcut", func(b *testing.B) {
		for b.Loop() {
			copy(p.ents, arrival)
			p.sortEntries()
		}
	})
	b.Run("whole-keys", func(b *testing.B) {
		for b.Loop() {
			copy(p.ents, arrival)
			slices.SortFunc(p.ents, func(x, y entry) int { return bytes.Compare(p.keyOf(&x), p.keyOf(&y)) })
		}
	})
}

// TestReadDuringLoadIngestsWhateverItsDeadline checks that a read with a
// context already done still ingests the pending batches and sees them: a
// reader's deadline must not cut short the ingest it waits for, which the
// next read would start over.
func TestReadDuringLoadIngestsWhateverItsDeadline(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), `{"sync": false}`)
	defer s.Close(ctx)
	if err := s.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range sortedBatches(8, 1000) {
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	e, err := s.Get(done, []byte("key/00007999"))
	if err != nil || e.Revision != 8000 {
		t.Fatalf("Get with a done context during the load = %+v, %v; want the last key put", e, err)
	}
	if s.hasPending.Load() {
		t.Fatal("the load still holds pending batches after the read")
	}
}

// TestBlockSizeReachesTheTables: the data blocks of the tables a load
// writes, and of those a flush writes, are cut at block_size.
func TestBlockSizeReachesTheTables(t *testing.T) {
	ctx := context.Background()
	meanBlock := func(config string, load bool) uint64 {
		s := openStore(t, t.TempDir(), config)
		defer s.Close(ctx)
		if load {
			if err := s.BeginLoad(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range sortedBatches(20, 500) {
			if err := s.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if load {
			if err := s.EndLoad(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// An ingest that overlaps the memtable waits in it as a flushable.
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
		levels, err := s.db.SSTables(pebble.WithProperties())
		if err != nil {
			t.Fatal(err)
		}
		var size, blocks uint64
		for _, level := range levels {
			for _, tb := range level {
				size += tb.Properties.DataSize
				blocks += tb.Properties.NumDataBlocks
			}
		}
		if blocks == 0 {
			t.Fatalf("%s: no data blocks in %d levels", config, len(levels))
		}
		return size / blocks
	}
	for _, load := range []bool{true, false} {
		small := meanBlock(`{"sync": false, "block_size": 4096}`, load)
		large := meanBlock(`{"sync": false, "block_size": 65536}`, load)
		if small > 4096 || large < 8*small {
			t.Errorf("load %v: mean data block %d bytes at block_size 4096, %d at 65536; want at most 4096 and at least 8 times more",
				load, small, large)
		}
	}
}

// TestPendingRegion fills a pending buffer in a mapped region past what
// the region holds, then releases it. The mutations must read back whole
// from the region, from the heap they spill onto, and after an undo.
func TestPendingRegion(t *testing.T) {
	var p pending
	p.alloc(4096, 8)
	if p.mem == nil && mapRegionWorks() {
		t.Fatal("alloc did not map a region")
	}
	var want [][]byte
	add := func(keys ...string) {
		t.Helper()
		b := &sdk.Batch{Cursor: uint64(len(want) + len(keys))}
		for _, k := range keys {
			v := bytes.Repeat([]byte(k[:1]), 300)
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: []byte(k), Value: v, Revision: 1})
		}
		if err := p.add(b); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			want = append(want, []byte(k))
		}
	}
	add("a1", "b2", "c3")
	m := p.mark()
	add("x9")
	p.undo(m)
	want = want[:3]
	// More entries and bytes than the region was given: both spill.
	for i := range 20 {
		add(fmt.Sprintf("k%02d", i))
	}
	if len(p.ents) != len(want) {
		t.Fatalf("%d entries, want %d", len(p.ents), len(want))
	}
	for i := range p.ents {
		e := &p.ents[i]
		if k := p.keyOf(e); !bytes.Equal(k[len(dataPrefix):], want[i]) {
			t.Errorf("entry %d: key %q, want %q", i, k, want[i])
		}
		if r := p.recOf(e); len(r) != 8+300 || r[8] != want[i][0] {
			t.Errorf("entry %d: record of %d bytes starting %q", i, len(r), r[8:9])
		}
	}
	p.release()
	if p.mem != nil || p.buf != nil || p.ents != nil || p.batches != 0 {
		t.Errorf("release left %+v", p)
	}
}

// mapRegionWorks reports whether this system maps regions (Linux).
func mapRegionWorks() bool {
	b, err := mapRegion(4096)
	if err != nil {
		return false
	}
	_ = unmapRegion(b)
	return true
}
