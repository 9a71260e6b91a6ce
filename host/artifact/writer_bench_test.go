package artifact

import (
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// BenchmarkWriter writes records shaped like the bench's (39-byte keys in
// order, 200-byte values of random alphanumerics) to nowhere, and reports
// the artifact's size over the records' encoding (ratio).
//
//	go test -run '^$' -bench Writer -benchtime 5x ./host/artifact
func BenchmarkWriter(b *testing.B) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 100000
	recs := make([]Record, n)
	raw := 0
	for i := range recs {
		v := make([]byte, 200)
		for j := range v {
			v[j] = alphabet[rng.IntN(len(alphabet))]
		}
		k := fmt.Appendf(nil, "route.t%04d.svc-%05d.endpoint.%08d", i/100, i%100000, i)
		recs[i] = Record{Key: k, Value: v, Revision: uint64(i + 1)}
		raw += recordHeadSize + len(k) + len(v)
	}
	b.SetBytes(int64(raw))
	b.ReportAllocs()
	var out countingWriter
	for b.Loop() {
		w, err := NewWriter(&out, testManifest())
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			if err := w.Add(r); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out.n)/float64(b.N)/float64(raw), "ratio")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)
