package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/conformance"
	"github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

// TestConformanceInProcess runs the store contract against the package
// directly (the plugin binary is proven in package conformance).
func TestConformanceInProcess(t *testing.T) {
	conformance.Run(t, conformance.InProcess("sqlite", func() sdk.Store { return store.New() }))
}

// BenchmarkApply measures batches of 1000 (SQLITE_BENCH_BATCH) keys of 40
// bytes in random order with 200-byte values, each batch committed with its
// cursor: new keys, overwrites of 200,000 existing ones, and new keys in a
// bulk load (sdk.Loader), whose EndLoad is reported apart as endload-ms.
func BenchmarkApply(b *testing.B) {
	for _, mode := range []string{"insert", "insert-ordered", "overwrite", "load"} {
		b.Run(mode, func(b *testing.B) {
			s := store.New()
			ctx := context.Background()
			if _, err := s.Open(ctx, b.TempDir(), []byte(benchConfig())); err != nil {
				b.Fatal(err)
			}
			defer s.Close(ctx)
			value := make([]byte, 200)
			rng := rand.New(rand.NewPCG(1, 2))
			const keys = 200_000
			size := 1000
			if s := os.Getenv("SQLITE_BENCH_BATCH"); s != "" {
				size, _ = strconv.Atoi(s)
			}
			var cursor uint64
			next := func(i int) *sdk.Batch {
				batch := &sdk.Batch{Mutations: make([]sdk.Mutation, size)}
				for j := range batch.Mutations {
					k := i*size + j
					switch mode {
					case "insert-ordered":
					case "overwrite":
						k = rng.IntN(keys)
					default:
						k = int(uint32(k * 2654435761)) // distinct, in random order
					}
					cursor++
					key := fmt.Appendf(nil, "route.t%04d.svc-%05d.endpoint.%08d", k%1000, k%10000, k)
					if mode == "insert-ordered" {
						key = fmt.Appendf(nil, "route.endpoint.%08d.t%04d.svc-%05d", k, k%1000, k%10000)
					}
					batch.Mutations[j] = sdk.Mutation{Op: sdk.OpPut, Key: key, Value: value, Revision: cursor}
				}
				batch.Cursor = cursor
				return batch
			}
			if mode == "overwrite" {
				for i := range keys / size {
					if err := s.Apply(ctx, next(i)); err != nil {
						b.Fatal(err)
					}
				}
			}
			if mode == "load" {
				if err := s.BeginLoad(ctx); err != nil {
					b.Fatal(err)
				}
			}
			// The keys are made before the clock starts: not Apply's work
			// (fmt takes a tenth of a batch in order), and the checkpoints
			// would go on while the clock stopped.
			batches := make([]*sdk.Batch, b.N)
			for i := range batches {
				batches[i] = next(i)
			}
			pages := store.PagesWritten(s)
			b.ResetTimer()
			for _, batch := range batches {
				if err := s.Apply(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "entries/s")
			// Pages written to the WAL per entry: what a key's place in
			// the B-trees costs; a random key dirties a page of its own.
			b.ReportMetric(float64(store.PagesWritten(s)-pages)/float64(b.N*size), "pages/entry")
			if mode == "load" {
				start := time.Now()
				if err := s.EndLoad(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Milliseconds()), "endload-ms")
			}
		})
	}
}

// benchConfig is the store_config of BenchmarkApply: SQLITE_BENCH_CONFIG
// (JSON) to compare settings, default "{}".
func benchConfig() string {
	if c := os.Getenv("SQLITE_BENCH_CONFIG"); c != "" {
		return c
	}
	return "{}"
}
