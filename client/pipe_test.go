package client_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/client"
)

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
		time.Sleep(100 * time.Millisecond)
		if after := runtime.NumGoroutine(); after > before+10 {
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
