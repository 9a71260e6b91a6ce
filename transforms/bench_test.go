package transforms_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/transforms"
)

// BenchmarkProcess measures a keep-all chain on batches of 1000 records of
// 200 bytes (24-byte key, 176-byte value), and reports the cost per record.
// "wat" and "go" use the batched entry point; "wat-per-record" a module
// without it, so one call per record.
func BenchmarkProcess(b *testing.B) {
	const batch = 1000
	recs := make([]sdk.Mutation, batch)
	value := make([]byte, 176)
	for i := range recs {
		recs[i] = sdk.Mutation{
			Op:       sdk.OpPut,
			Key:      fmt.Appendf(nil, "route.%018d", i),
			Value:    value,
			Revision: uint64(i + 1),
		}
	}
	for _, bm := range []struct {
		name   string
		module transforms.Module
	}{
		{"wat", transforms.Module{Name: "keepall", Path: wasm("keepall")}},
		{"go", transforms.Module{Name: "goguest", Path: wasm("goguest")}},
		{"wat-per-record", transforms.Module{Name: "loop", Path: wasm("loop")}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			rt := newRuntime(b, transforms.Options{})
			c := newChain(b, rt, bm.module)
			ctx := context.Background()
			b.SetBytes(batch * 200)
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				out, err := c.Process(ctx, recs)
				if err != nil {
					b.Fatal(err)
				}
				if !out[batch-1].Keep {
					b.Fatalf("last record not kept: %v", out[batch-1].Err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*batch), "ns/record")
		})
	}
}
