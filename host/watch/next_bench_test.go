package watch_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/watch"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// BenchmarkNext reads a bucket of WATCH_BENCH_KEYS keys (default 100k) from
// the start, one op per key, through watch.Next ("watch") and through a raw
// nats.go WatchAll that only counts ("raw"), in the same process against
// the same embedded server: the host's reader against the client's own
// cost. ns/key is wall time, cpu-ns/key the whole process's CPU (the
// server's included) per key.
//
//	WATCH_BENCH_KEYS=300000 go test -run '^$' -bench BenchmarkNext -benchtime 1x -count 3 ./host/watch/
func BenchmarkNext(b *testing.B) {
	n := 100_000
	if s := os.Getenv("WATCH_BENCH_KEYS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	srv := testenv.NATS(b)
	_, js := testenv.JetStream(b, srv.ClientURL())
	kv := testenv.Bucket(b, js, jetstream.KeyValueConfig{Bucket: "b"})
	val := make([]byte, 200)
	for i := range n {
		if _, err := js.PublishAsync(fmt.Sprintf("$KV.b.key.%07d", i), val); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("the bucket's puts were not acknowledged within a minute")
	}
	b.Run("watch", func(b *testing.B) {
		cpu0 := testenv.ProcessCPU()
		for range b.N {
			w, err := watch.Start(ctx, js, watch.Config{Bucket: "b"})
			if err != nil {
				b.Fatal(err)
			}
			got := 0
			for got < n {
				if _, err := w.Next(ctx, 5*time.Second); err != nil {
					b.Fatalf("after %d of %d keys: %v", got, n, err)
				}
				got++
			}
			w.Stop()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		b.ReportMetric(float64((testenv.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/key")
	})
	b.Run("raw", func(b *testing.B) {
		cpu0 := testenv.ProcessCPU()
		for range b.N {
			kw, err := kv.WatchAll(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got := 0
			for e := range kw.Updates() {
				if e == nil {
					break
				}
				got++
			}
			if got != n {
				b.Fatalf("raw watcher: %d keys of %d", got, n)
			}
			_ = kw.Stop()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		b.ReportMetric(float64((testenv.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/key")
	})
}
