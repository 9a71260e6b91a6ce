package front

import (
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/valyala/fasthttp"
)

// BenchmarkFloor measures what serving a read costs over HTTP, on both
// ends in this process, with nothing behind it: 8 goroutines GET a
// 300-byte body over loopback: from this package's Server with no fast
// reads (each connection is handed to net/http at its first request) and
// with them (the fast server answers), each reader on a connection of its
// own (net/http's client); and from the fast server with the 8 sharing one
// pipelined connection (fasthttp's PipelineClient). It reports the
// process's CPU time per request. This is the floor under the reads rows
// of make bench (BENCHMARKS.md, reads through the fast server).
func BenchmarkFloor(b *testing.B) {
	body := make([]byte, 300)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Slipstream-Cursor", "1234567")
		_, _ = w.Write(body)
	})
	read := func(ctx *fasthttp.RequestCtx) bool {
		ctx.Response.Header.SetContentType("application/octet-stream")
		ctx.Response.Header.Set("Slipstream-Cursor", "1234567")
		ctx.SetBody(body)
		return true
	}
	serve := func(b *testing.B, o Options) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s := New(o)
		go func() { _ = s.Serve(ln) }()
		b.Cleanup(func() { _ = s.Shutdown(b.Context()) })
		return ln.Addr().String()
	}
	netGet := func(b *testing.B, addr string) func() error {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		b.Cleanup(t.CloseIdleConnections)
		hc := &http.Client{Transport: t}
		url := "http://" + addr + "/v1/folds/f/keys/k"
		return func() error {
			resp, err := hc.Get(url)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		}
	}
	for _, c := range []struct {
		name string
		get  func(b *testing.B) func() error
	}{
		{"nethttp", func(b *testing.B) func() error { return netGet(b, serve(b, Options{HTTP: slow})) }},
		{"fast", func(b *testing.B) func() error { return netGet(b, serve(b, Options{Read: read, HTTP: slow})) }},
		{"fast-pipelined", func(b *testing.B) func() error {
			addr := serve(b, Options{Read: read, HTTP: slow})
			pc := &fasthttp.PipelineClient{Addr: addr, MaxConns: 1, MaxPendingRequests: 1024}
			url := "http://" + addr + "/v1/folds/f/keys/k"
			return func() error {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI(url)
				return pc.Do(req, resp)
			}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			get := c.get(b)
			b.SetParallelism(4) // 8 readers on 2 cores, as the reads rows
			cpu0 := testenv.ProcessCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(testenv.ProcessCPU()-cpu0)/float64(b.N)/1e3, "cpu-µs/req")
		})
	}
}
