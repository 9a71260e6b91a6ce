package client_test

import (
	"bufio"
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
	"github.com/slipstreamkv/slipstream/internal/testenv"
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
	return testenv.Counter(t, testenv.Scrape(t, addr), "slipstream_http_fast_reads_total")
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

// rawServer serves each connection with answer, called per request with
// the connection's number (from 0); it returns false to end the
// connection.
func rawServer(t *testing.T, answer func(conn int, path string, w io.Writer) bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			i := int(n.Add(1) - 1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil || !answer(i, req.URL.Path, c) {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func answer(w io.Writer, path, extra string) bool {
	_, err := fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nSlipstream-Revision: 1\r\n%sContent-Length: %d\r\n\r\n%s", extra, len(path), path)
	return err == nil
}

func mustGet(t *testing.T, c *client.Client, ctx context.Context, key string) {
	t.Helper()
	got, _, err := c.Get(ctx, "f", key)
	if err != nil || string(got.Value) != "/v1/folds/f/keys/"+key {
		t.Fatalf("Get %s: %q, %v", key, got.Value, err)
	}
}

// TestPipeRecovers: the pipe gets past what a review of it found: a
// connection whose answer never comes is dropped once a Get gives up on it
// (the Gets after it are answered on a new one); an interim 1xx answer is
// not taken for a Get's answer; Gets queued behind an answer that closes
// the connection are sent again, however many; a Get does not wait for
// another Get's dial beyond its own context; Close ends the connection.
func TestPipeRecovers(t *testing.T) {
	t.Run("stuck", func(t *testing.T) {
		addr := rawServer(t, func(conn int, path string, w io.Writer) bool {
			if conn == 0 && strings.HasSuffix(path, "/stall") {
				time.Sleep(time.Minute)
				return false
			}
			return answer(w, path, "")
		})
		c, _ := client.New(addr)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if _, _, err := c.Get(ctx, "f", "stall"); err == nil {
			t.Fatal("a Get without an answer succeeded")
		}
		cancel()
		mustGet(t, c, ctxT(t, 5*time.Second), "after")
	})
	t.Run("interim", func(t *testing.T) {
		addr := rawServer(t, func(conn int, path string, w io.Writer) bool {
			_, _ = io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
			return answer(w, path, "")
		})
		c, _ := client.New(addr)
		defer c.Close()
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() { mustGet(t, c, ctxT(t, 5*time.Second), fmt.Sprint("k", i)) })
		}
		wg.Wait()
	})
	t.Run("close after each", func(t *testing.T) {
		addr := rawServer(t, func(conn int, path string, w io.Writer) bool {
			answer(w, path, "Connection: close\r\n")
			// As net/http closes: the write side first, then reading what
			// the client sent meanwhile for a moment, so that the kernel
			// sends no reset, which could cost the client the answer.
			c := w.(*net.TCPConn)
			_ = c.CloseWrite()
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = io.Copy(io.Discard, c)
			return false
		})
		c, _ := client.New(addr)
		defer c.Close()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 20 {
					mustGet(t, c, ctxT(t, 10*time.Second), fmt.Sprintf("k%d.%d", g, i))
				}
			})
		}
		wg.Wait()
	})
	t.Run("dial", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var conns []net.Conn
		var mu sync.Mutex
		go func() { // accepts, never answers the TLS handshake
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}
		}()
		defer func() {
			mu.Lock()
			for _, conn := range conns {
				conn.Close()
			}
			mu.Unlock()
		}()
		c, _ := client.New("https://" + ln.Addr().String())
		defer c.Close()
		slow, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go func() { _, _, _ = c.Get(slow, "f", "a") }()
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		_, _, err = c.Get(ctxT(t, 100*time.Millisecond), "f", "b")
		if err == nil || time.Since(start) > 2*time.Second {
			t.Errorf("a Get with 100 ms left, another Get's dial under way: %v after %v", err, time.Since(start))
		}
	})
	t.Run("close", func(t *testing.T) {
		addr := rawServer(t, func(conn int, path string, w io.Writer) bool { return answer(w, path, "") })
		before := runtime.NumGoroutine()
		for i := range 50 {
			c, _ := client.New(addr)
			mustGet(t, c, ctxT(t, 5*time.Second), fmt.Sprint("k", i))
			c.Close()
		}
		// The connections' goroutines (the client's and the server's) end
		// soon after Close; without Close they would stay.
		after := runtime.NumGoroutine()
		for deadline := time.Now().Add(5 * time.Second); after > before+10 && time.Now().Before(deadline); after = runtime.NumGoroutine() {
			time.Sleep(20 * time.Millisecond)
		}
		if after > before+10 {
			t.Errorf("%d goroutines after 50 Clients closed, %d before", after, before)
		}
	})
}

// TestPipeOverHTTP2Server: a TLS configuration offering h2 to a server
// that speaks it does not make the pipe's connection HTTP/2.
func TestPipeOverHTTP2Server(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Slipstream-Revision", "1")
		_, _ = io.WriteString(w, r.URL.EscapedPath())
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	c, err := client.New(srv.URL, client.WithTLSConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustGet(t, c, ctxT(t, 5*time.Second), "k")
}

// TestTokenWithControlCharacters: a token that would split a request is
// refused when the Client is made.
func TestTokenWithControlCharacters(t *testing.T) {
	if _, err := client.New("127.0.0.1:1", client.WithToken("tok\r\nGET /x HTTP/1.1")); err == nil {
		t.Error("a token with CR LF was accepted")
	}
}
