package front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serveTest serves o on a loopback port until the test ends, and checks
// that Serve then returns http.ErrServerClosed.
func serveTest(t *testing.T, o Options) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}

// fastSlow serves GET /fast/... on the fast server and every request on
// net/http, each answer naming the server and echoing the path and body.
func fastSlow() Options {
	return Options{
		Read: func(ctx *fasthttp.RequestCtx) bool {
			uri := string(ctx.Request.Header.RequestURI())
			if !ctx.IsGet() || !strings.HasPrefix(uri, "/fast/") {
				return false
			}
			ctx.Response.Header.Set("X-Server", "fast")
			ctx.SetBodyString(uri)
			return true
		},
		HTTP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Server", "slow")
			fmt.Fprintf(w, "%s %s %s", r.Method, r.RequestURI, body)
		}),
	}
}

// readAnswer reads the next answer on c, within 5 seconds, and its body.
func readAnswer(t *testing.T, c net.Conn, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestPipelinedHandOver sends requests of both kinds pipelined on one
// connection, in one write: each must be answered in order by the server
// whose request it is until the first request net/http serves, and by
// net/http after it (the connection is its from then on), with the bodies
// and paths as sent, a chunked body included.
func TestPipelinedHandOver(t *testing.T) {
	_, addr := serveTest(t, fastSlow())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reqs := "GET /fast/1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /fast/2 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /slow/a?q=%2F HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /fast/3 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /slow/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" +
		"GET //fast/../x HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(c, reqs); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, want := range []struct{ server, body string }{
		{"fast", "/fast/1"},
		{"fast", "/fast/2"},
		{"slow", "POST /slow/a?q=%2F hello"},
		{"slow", "GET /fast/3 "},
		{"slow", "POST /slow/b abcde"},
		{"slow", "GET //fast/../x "},
	} {
		resp, body := readAnswer(t, c, br)
		if got := resp.Header.Get("X-Server"); got != want.server || body != want.body {
			t.Errorf("answer %d: %s server, %q; want %s server, %q", i, got, body, want.server, want.body)
		}
	}
}

// TestHandedOverStreamSeesTheClientLeave: a request net/http serves gets
// its semantics, here a context that ends when the client goes away (the
// change stream depends on it), and its streamed writes reach the client
// as they are flushed.
func TestHandedOverStreamSeesTheClientLeave(t *testing.T) {
	left := make(chan struct{})
	_, addr := serveTest(t, Options{
		HTTP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "first\n")
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				close(left)
			case <-time.After(10 * time.Second):
			}
		}),
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /watch HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("streamed %q, %v; want the flushed line", line, err)
	}
	c.Close()
	select {
	case <-left:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context did not end when its client left")
	}
}

// TestExpectContinueOnce: fasthttp answers Expect: 100-continue before the
// body is sent; net/http, serving the request, must not answer it again.
func TestExpectContinueOnce(t *testing.T) {
	_, addr := serveTest(t, fastSlow())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("first answer %v, %v; want 100 Continue", resp, err)
	}
	if _, err := io.WriteString(c, "ok"+"GET /fast/after HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"POST /slow ok", "GET /fast/after "} {
		resp, body := readAnswer(t, c, br)
		if resp.StatusCode != http.StatusOK || body != want {
			t.Errorf("answer %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
}

// TestShutdownWaitsForHandedOverRequests: a request net/http serves when
// Shutdown starts is answered; Serve returns http.ErrServerClosed (checked
// by serveTest).
func TestShutdownWaitsForHandedOverRequests(t *testing.T) {
	started := make(chan struct{})
	s, addr := serveTest(t, Options{HTTP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})})
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(body)
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("net/http never got the request")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if body := <-got; body != "done" {
		t.Errorf("the request in progress got %q, want done", body)
	}
}
