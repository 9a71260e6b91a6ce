package client_test

import (
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// BenchmarkHTTPFloor measures what net/http alone costs a read, on both
// ends in this process: 8 goroutines GET a 300-byte body from a handler
// that does nothing else, over loopback, with HTTP/1.1 keep-alive and with
// HTTP/2 over cleartext (h2c). It reports the process's CPU time per
// request (user and system). This is the floor under the reads rows of
// make bench: a read through the API can cost no less, however fast the
// fold answers (BENCHMARKS.md, the cached reads gap).
func BenchmarkHTTPFloor(b *testing.B) {
	body := make([]byte, 300)
	var both http.Protocols
	both.SetHTTP1(true)
	both.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &both, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Slipstream-Cursor", "1234567")
		_, _ = w.Write(body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	url := "http://" + ln.Addr().String() + "/v1/folds/f/keys/k"
	for _, c := range []struct {
		name string
		h2c  bool
	}{{"http1", false}, {"h2c", true}} {
		b.Run(c.name, func(b *testing.B) {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.MaxIdleConnsPerHost = 64
			if c.h2c {
				var p http.Protocols
				p.SetUnencryptedHTTP2(true)
				t.Protocols = &p
			}
			hc := &http.Client{Transport: t}
			defer t.CloseIdleConnections()
			b.SetParallelism(4) // 8 readers on 2 cores, as the reads rows
			cpu0 := testenv.ProcessCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := hc.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(testenv.ProcessCPU()-cpu0)/float64(b.N)/1e3, "cpu-µs/req")
		})
	}
}
