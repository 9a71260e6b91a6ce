package store_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

// BenchmarkViewScan scans a whole view, as an export does: of a fold of
// SQLITE_BENCH_KEYS keys (default 300,000) of 39 bytes with 200-byte
// values, bulk-loaded in hash order, then closed and opened again. It
// reports the time and the process's CPU time per entry.
//
//	go test -run '^$' -bench ViewScan -benchtime 3x ./plugins/sqlite/store
func BenchmarkViewScan(b *testing.B) {
	keys := benchKeys()
	ctx := context.Background()
	dir := b.TempDir()
	s := store.New()
	if _, err := s.Open(ctx, dir, []byte(benchConfig())); err != nil {
		b.Fatal(err)
	}
	if err := s.BeginLoad(ctx); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 200)
	for i := 0; i < keys; i += 1000 {
		batch := &sdk.Batch{Cursor: uint64(min(i+1000, keys))}
		for j := i; j < min(i+1000, keys); j++ {
			for v := range value {
				value[v] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[rng.IntN(62)]
			}
			batch.Mutations = append(batch.Mutations, sdk.Mutation{Op: sdk.OpPut,
				Key: benchKey(j), Value: append([]byte(nil), value...), Revision: uint64(j + 1)})
		}
		if err := s.Apply(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.EndLoad(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
	s = store.New()
	if _, err := s.Open(ctx, dir, []byte(benchConfig())); err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	cpu0 := testenv.ProcessCPU()
	for b.Loop() {
		v, err := s.Snapshot(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		if err := v.Scan(ctx, sdk.Range{}, func(sdk.Entry) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if err := v.Close(); err != nil {
			b.Fatal(err)
		}
		if n != keys {
			b.Fatalf("scanned %d entries of %d", n, keys)
		}
	}
	n := float64(b.N * keys)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/entry")
	b.ReportMetric(float64((testenv.ProcessCPU()-cpu0).Nanoseconds())/n, "cpu-ns/entry")
}
