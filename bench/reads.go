package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/api"
	"github.com/slipstreamkv/slipstream/host/fold"
)

// maxReadsPerClient bounds a read phase by count as well as by time.
const maxReadsPerClient = 5_000_000

// apiServer is the host's HTTP API over one fold, on a loopback port.
type apiServer struct {
	srv  *http.Server
	base string
	done chan error
}

// serveAPI serves the host's API over f on a free loopback port.
func serveAPI(f *fold.Fold) (*apiServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &apiServer{
		srv:  &http.Server{Handler: api.Handler([]*fold.Fold{f}, prometheus.NewRegistry(), api.Options{Producer: "bench"}), ReadHeaderTimeout: 10 * time.Second},
		base: "http://" + ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { a.done <- a.srv.Serve(ln) }()
	return a, nil
}

// keyURL is the API address of a key of the bench's fold (keys need no
// escaping).
func (a *apiServer) keyURL(key string) string { return a.base + "/v1/folds/bench/keys/" + key }

// close shuts the server down and waits for Serve to return.
func (a *apiServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// A client still holds a connection mid-request: close it hard.
		// The measurement is over; this is not a failure of the run.
		err = a.srv.Close()
	}
	if serr := <-a.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// httpClient keeps enough idle connections for n concurrent clients, so
// that every request reuses one (no ephemeral port churn).
func httpClient(n int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{MaxIdleConns: 2 * n, MaxIdleConnsPerHost: 2 * n, DisableCompression: true},
		Timeout:   10 * time.Second,
	}
}

// readResult is the outcome of one read phase.
type readResult struct {
	rate     float64
	p50, p99 time.Duration
	n        int
}

func (r readResult) String() string {
	return fmt.Sprintf("%s · p99 %s (p50 %s)", fmtRate(r.rate, "reads/s"), fmtMs(r.p99), fmtMs(r.p50))
}

// readPhase runs -read-clients goroutines that read random existing keys
// with get for -read-for.
func (b *bench) readPhase(ctx context.Context, label string, get func(ctx context.Context, key string) error) (readResult, error) {
	o := b.o
	var res readResult
	err := labelled(ctx, label, func(ctx context.Context) error {
		lats := make([][]time.Duration, o.readClients)
		errs := make([]error, o.readClients)
		var wg sync.WaitGroup
		start := time.Now()
		deadline := start.Add(o.readFor)
		for c := range o.readClients {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(c), 7))
				l := make([]time.Duration, 0, 1<<14)
				for len(l) < maxReadsPerClient && time.Now().Before(deadline) {
					key := keyOf(rng.IntN(o.keys))
					t := time.Now()
					if err := get(ctx, key); err != nil {
						errs[c] = fmt.Errorf("%s: read %s: %w", label, key, err)
						return
					}
					l = append(l, time.Since(t))
				}
				lats[c] = l
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		if err := errors.Join(errs...); err != nil {
			return err
		}
		all := slices.Concat(lats...)
		if len(all) == 0 {
			return fmt.Errorf("%s: no read completed in %v", label, o.readFor)
		}
		slices.Sort(all)
		res = readResult{rate: float64(len(all)) / elapsed.Seconds(), p50: percentile(all, 0.5), p99: percentile(all, 0.99), n: len(all)}
		b.logf("  %-18s %d reads by %d clients in %v: %s", label, len(all), o.readClients, elapsed.Round(time.Millisecond), res)
		return nil
	})
	return res, err
}

// rawReads measures kv.Get from NATS, the raw read a node without a fold
// would make.
func (b *bench) rawReads(ctx context.Context) error {
	kv, closeConn, err := b.rawKV(ctx, "raw-reads")
	if err != nil {
		return err
	}
	defer closeConn()
	b.rawReadRes, err = b.readPhase(ctx, "raw-reads", func(ctx context.Context, key string) error {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return err
		}
		if len(e.Value()) != valueLen {
			return fmt.Errorf("value of %d bytes, want %d", len(e.Value()), valueLen)
		}
		return nil
	})
	return err
}

// foldReads measures GET /v1/folds/{fold}/keys/{key}.
func (b *bench) foldReads(ctx context.Context, be *backend, a *apiServer) error {
	client := httpClient(b.o.readClients)
	res, err := b.readPhase(ctx, "reads-"+be.name, func(ctx context.Context, key string) error {
		body, err := httpGet(ctx, client, a.keyURL(key))
		if err != nil {
			return err
		}
		if len(body) != valueLen {
			return fmt.Errorf("value of %d bytes, want %d", len(body), valueLen)
		}
		return nil
	})
	if err != nil {
		return err
	}
	raw := b.rawReadRes
	b.add(row{
		group: groupReads,
		scenario: fmt.Sprintf("GET /v1/folds/{fold}/keys/{key} → %s, %d clients, %v, random keys of %s",
			be.name, b.o.readClients, b.o.readFor, fmtCount(b.o.keys)),
		value: res.String(), baseline: raw.String() + " kv.Get from NATS",
		ratio: fmtPct(res.rate / raw.rate), target: "—", result: "—",
	})
	return nil
}
