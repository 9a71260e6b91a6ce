package store_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

// benchKeys is the number of keys of the store benchmarks' folds:
// SQLITE_BENCH_KEYS, 300,000 by default.
func benchKeys() int {
	if s := os.Getenv("SQLITE_BENCH_KEYS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 300_000
}

// benchKey is key j of the store benchmarks' folds: 39 bytes, in an order
// that looks random (hash order), like a bucket's keys in stream order.
func benchKey(j int) []byte {
	k := int(uint32(j * 2654435761))
	return fmt.Appendf(nil, "route.t%04d.svc-%05d.endpoint.%08d", k%10000, k/10%100000, k%100_000_000)
}

// BenchmarkLoad measures a whole bulk load into an empty fold, BeginLoad to
// EndLoad, as a bootstrap runs it: SQLITE_BENCH_KEYS keys (default 300,000)
// of 39 bytes in hash order with 200-byte random values, in batches of
// 1000 (sub-benchmark random; sorted: in key order, as an import from an
// artifact delivers them). It reports keys/s over the whole load, EndLoad's wall and CPU time, and
// the process's CPU time per key (user and system, which includes the
// background checkpoints).
func BenchmarkLoad(b *testing.B) {
	b.Run("random", func(b *testing.B) { benchmarkLoad(b, false) })
	b.Run("sorted", func(b *testing.B) { benchmarkLoad(b, true) })
}

func benchmarkLoad(b *testing.B, sorted bool) {
	keys := benchKeys()
	const size = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[rng.IntN(62)]
	}
	order := make([][]byte, keys)
	for j := range order {
		order[j] = benchKey(j)
	}
	if sorted {
		slices.SortFunc(order, bytes.Compare)
	}
	var batches []*sdk.Batch
	for i := 0; i < keys; i += size {
		batch := &sdk.Batch{}
		for j := i; j < min(i+size, keys); j++ {
			off := rng.IntN(len(pool) - 200)
			batch.Mutations = append(batch.Mutations, sdk.Mutation{Op: sdk.OpPut,
				Key: order[j], Value: pool[off : off+200], Revision: uint64(j + 1)})
		}
		batch.Cursor = uint64(min(i+size, keys))
		batches = append(batches, batch)
	}
	ctx := context.Background()
	var wall, endLoad time.Duration
	var cpu, endCPU time.Duration
	for range b.N {
		s := store.New()
		if _, err := s.Open(ctx, b.TempDir(), []byte(benchConfig())); err != nil {
			b.Fatal(err)
		}
		cpu0 := testenv.ProcessCPU()
		start := time.Now()
		if err := s.BeginLoad(ctx); err != nil {
			b.Fatal(err)
		}
		for _, batch := range batches {
			if err := s.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		end, cpu1 := time.Now(), testenv.ProcessCPU()
		if err := s.EndLoad(ctx); err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
		endLoad += time.Since(end)
		cpu += testenv.ProcessCPU() - cpu0
		endCPU += testenv.ProcessCPU() - cpu1
		b.StopTimer()
		if err := s.Close(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N * keys)
	b.ReportMetric(n/wall.Seconds(), "keys/s")
	b.ReportMetric(float64(endLoad.Milliseconds())/float64(b.N), "endload-ms")
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/key")
	b.ReportMetric(float64(endCPU.Milliseconds())/float64(b.N), "endload-cpu-ms")
}
