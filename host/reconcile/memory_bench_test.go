package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/reconcile"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// emptyStore is a fold with no keys: every live key is missing, the worst
// case for the comparison's memory.
type emptyStore struct{ sdk.Store }

func (emptyStore) Scan(context.Context, sdk.Range, func(sdk.Entry) error) error { return nil }

// BenchmarkCompareMemory measures the peak heap a comparison adds per live
// key. SLIPSTREAM_RECONCILE_KEYS sets the bucket size (default 1,000,000).
// make bench runs it; it prints bytes/key.
func BenchmarkCompareMemory(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("SLIPSTREAM_RECONCILE_KEYS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	// The server runs in its own process so that its memory is not counted.
	_, js := testenv.JetStream(b, testenv.ExternalNATS(b))
	testenv.Bucket(b, js, jetstream.KeyValueConfig{Bucket: "mem"})
	value := make([]byte, 200)
	for i := range n {
		if _, err := js.PublishAsync(fmt.Sprintf("$KV.mem.route.t%04d.svc-%05d.endpoint.%08d", i%1000, i%10000, i), value); err != nil {
			b.Fatal(err)
		}
		if i%4000 == 3999 || i == n-1 {
			<-js.PublishAsyncComplete()
		}
	}
	src := reconcile.Source{JS: js, Bucket: "mem"}
	for b.Loop() {
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		missing := 0
		sum, err := reconcile.Compare(context.Background(), src, emptyStore{}, func(reconcile.Difference) error {
			missing++
			return nil
		})
		close(stop)
		<-done
		if err != nil {
			b.Fatal(err)
		}
		if sum.Missing != n || missing != n {
			b.Fatalf("compare saw %d missing keys of %d", sum.Missing, n)
		}
		b.ReportMetric(float64(peak.Load()-min(peak.Load(), base.HeapAlloc))/float64(n), "peak-bytes/key")
	}
}
