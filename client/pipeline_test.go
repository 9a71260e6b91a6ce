package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/client"
)

// TestPipelinedGets: many goroutines Get keys through one Client, whose
// plain Gets share its pipelined connections; every answer is the value
// of the key asked (no answer goes to another request), keys that need
// escaping included, and the service's fast server answered them (its
// counter says so). An absent key and an unknown fold keep their errors
// on that path, and a cancelled or expired context ends a Get.
func TestPipelinedGets(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	const n = 200
	keys := make([]string, n)
	var last uint64
	for i := range n {
		keys[i] = fmt.Sprintf("p.%03d", i)
		switch i % 4 {
		case 1:
			keys[i] += "/a/./b//c" // a valid KV key: it must reach the server escaped
		case 2:
			keys[i] += "/x/"
		}
		last = e.put(keys[i], []byte("value of "+keys[i]))
	}
	c := e.client()
	if _, _, err := c.Get(ctx, "f", keys[0], client.MinCursor(last, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	before := fastReads(t, e.api)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				k := keys[(g*131+i*7)%n]
				got, at, err := c.Get(ctx, "f", k)
				if err == nil && (got.Key != k || string(got.Value) != "value of "+k || at.Cursor < last) {
					err = fmt.Errorf("Get %s = %q (key %s) at %v", k, got.Value, got.Key, at)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := fastReads(t, e.api) - before; got < 16*500 {
		t.Errorf("the fast server answered %d of the %d Gets", got, 16*500)
	}

	if _, at, err := c.Get(ctx, "f", "p.absent"); !errors.Is(err, client.ErrNotFound) || at.Cursor < last {
		t.Errorf("Get of an absent key: %v at %v, want ErrNotFound with the position", err, at)
	}
	if _, _, err := c.Get(ctx, "nofold", "p.000"); !errors.Is(err, client.ErrNoFold) || !strings.Contains(err.Error(), `no fold named "nofold"`) {
		t.Errorf("Get of an unknown fold: %v, want ErrNoFold with the server's message", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Get(cancelled, "f", "p.000"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v", err)
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, _, err := c.Get(expired, "f", "p.000"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get with an expired deadline: %v", err)
	}
	if got, _, err := c.Get(context.Background(), "f", keys[1]); err != nil || string(got.Value) != "value of "+keys[1] {
		t.Errorf("Get without a deadline: %q, %v", got.Value, err)
	}
	// Gets that the fast server would hand to net/http (with the shared
	// connection) go another way; the Gets after them stay fast.
	_, _, _ = c.Get(ctx, "f", "")
	_, _, _ = c.Get(ctx, "a fold", "p.000")
	before = fastReads(t, e.api)
	for _, k := range keys[:10] {
		if _, _, err := c.Get(ctx, "f", k); err != nil {
			t.Fatal(err)
		}
	}
	if got := fastReads(t, e.api) - before; got != 10 {
		t.Errorf("the fast server answered %d of 10 Gets after Gets it does not take", got)
	}
}

// fastReads is the service's count of the key reads its fast server
// answered.
func fastReads(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, "slipstream_http_fast_reads_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(f)
		}
	}
	t.Fatal("no slipstream_http_fast_reads_total in /metrics")
	return 0
}

// TestPipelinedGetFailures: a plain Get fails at once, with the cause,
// when the service cannot be reached or its certificate is not trusted;
// it ends at its context's cancellation even with a deadline far off, and
// cancelled Gets leave no goroutine behind each; a connection the server
// closes between Gets is replaced without the caller seeing it.
func TestPipelinedGetFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	c, err := client.New(refused)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, _, err := c.Get(context.Background(), "f", "k"); err == nil || !strings.Contains(err.Error(), "refused") || time.Since(start) > 5*time.Second {
		t.Errorf("Get from a closed port: %v after %v, want connection refused at once", err, time.Since(start))
	}

	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	c, err = client.New(tlsSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctxT(t, 10*time.Second), "f", "k"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Get from a server with an untrusted certificate: %v, want the certificate's error", err)
	}

	// A server that reads requests and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	c, err = client.New(silent.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if _, _, err := c.Get(ctx, "f", "k"); !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled Get: %v after %v, want context.Canceled at the cancellation", err, time.Since(start))
	}
	before := runtime.NumGoroutine()
	for range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Millisecond, cancel)
		_, _, _ = c.Get(ctx, "f", "k")
	}
	if after := runtime.NumGoroutine(); after > before+20 {
		t.Errorf("%d goroutines after 200 cancelled Gets, %d before", after, before)
	}

	// A server that answers one request per connection, then closes it.
	var conns atomic.Int64
	once := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns.Add(1)
		w.Header().Set("Connection", "close")
		w.Header().Set("Slipstream-Revision", "7")
		_, _ = io.WriteString(w, r.URL.EscapedPath())
	}))
	defer once.Close()
	c, err = client.New(once.URL)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		got, _, err := c.Get(ctxT(t, 10*time.Second), "f", "k"+strconv.Itoa(i))
		if err != nil || string(got.Value) != "/v1/folds/f/keys/k"+strconv.Itoa(i) {
			t.Fatalf("Get %d over a connection the server closes after each answer: %q, %v", i, got.Value, err)
		}
	}
}
