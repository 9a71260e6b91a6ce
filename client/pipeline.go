package client

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// A Client's plain Gets (no read options) share one connection, on which
// their requests are pipelined (HTTP/1.1): the service answers the requests
// that arrive together with one write, so that many goroutines' reads cost
// a fraction of a request each, as nats.go's requests share one connection.
// net/http's client does not pipeline, and fasthttp's PipelineClient has no
// contexts, retries a refused dial until the request's deadline and drops
// the oldest requests when many wait: so the pipelining is written here, on
// net/http's response parsing. One connection rather than several: in
// make bench's reads (8 goroutines, 300k keys, 2026-12-07, with fasthttp's
// PipelineClient) two gave 1.65-1.67× kv.Get's reads/s, one 2.06-2.30×.

// Bounds of the pipe.
const (
	// pipeWriteTimeout bounds one write: a service that stops reading
	// ends the connection.
	pipeWriteTimeout = 10 * time.Second
	// pipeStuck: a Get whose context ends while the oldest request on its
	// connection has waited this long for an answer drops the connection,
	// so that the Gets after it do not queue behind an answer that may
	// never come (a half-open connection).
	pipeStuck = 2 * time.Second
	// pipeRetries is how many times a Get is sent again after a
	// connection that had answered fails under it; a Get queued behind an
	// answer that closed the connection is sent again without counting,
	// up to pipeAttempts sends in all. Each such round answers one Get at
	// least, so with n Gets at once a Get waits about n rounds, and 256
	// leaves a busy client far from the bound; but a service that keeps
	// closing connections unanswered must not keep a Get dialling without
	// end.
	pipeRetries  = 2
	pipeAttempts = 256
)

// pipe is the connection of a Client's plain Gets, dialled when first
// needed and again after it fails.
type pipe struct {
	addr   string      // host:port to dial
	host   string      // the Host header
	tls    *tls.Config // nil for http://
	prefix string      // the base URL's path, before every request's

	mu      sync.Mutex
	conn    *pipeConn
	dialing chan struct{} // closed when the dial under way ends
}

// newPipe returns the pipe of the service at u, whose TLS configuration
// (https) is cfg, or the system's when nil.
func newPipe(u *url.URL, cfg *tls.Config) *pipe {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	p := &pipe{addr: net.JoinHostPort(u.Hostname(), port), host: u.Host, prefix: u.EscapedPath()}
	if u.Scheme == "https" {
		p.tls = &tls.Config{}
		if cfg != nil {
			p.tls = cfg.Clone()
		}
		if p.tls.ServerName == "" {
			p.tls.ServerName = u.Hostname()
		}
		p.tls.NextProtos = []string{"http/1.1"} // the pipe speaks HTTP/1.1 only
	}
	return p
}

// pipeConn is one connection: requests are written in the order their
// calls are queued, and the reader hands each response to the oldest call.
type pipeConn struct {
	c net.Conn

	mu      sync.Mutex
	out     []byte      // requests not yet written
	calls   []*pipeCall // calls whose response has not been read, oldest first
	err     error       // why the connection ended; no call is queued after
	werr    error       // why writing failed; the reader ends the connection
	spare   []byte      // the buffer out had before the last write
	writing bool        // a send is writing out
	answers int         // responses read on it
}

// pipeCall is one Get waiting for its response.
type pipeCall struct {
	done chan pipeResult // buffered: an abandoned call's result is dropped
	sent time.Time
}

type pipeResult struct {
	resp *http.Response // the body read into body
	body []byte
	err  error
	// retry says the request may be sent again: the connection answered
	// others before it failed, or the answer before this call's closed it
	// (free: it was never read).
	retry, free bool
}

var getRequest = &http.Request{Method: http.MethodGet}

// get sends GET path on the pipe and waits for the answer or ctx. A
// connection that fails under a request, after it had answered others
// (the service closed it while idle, or shut down), is replaced and the
// request sent again, as it is a read.
func (p *pipe) get(ctx context.Context, path, token string) (*http.Response, []byte, error) {
	req := p.request(path, token)
	for retries, attempts := 0, 1; ; attempts++ {
		pc, err := p.connection(ctx)
		if err != nil {
			return nil, nil, err
		}
		call, err := pc.send(req)
		var r pipeResult
		if err != nil {
			r = pipeResult{err: err, free: true} // never written on pc
		} else {
			select {
			case r = <-call.done:
			case <-ctx.Done():
				if pc.stuck() {
					p.drop(pc, errors.New("no answer for "+pipeStuck.String()))
				}
				return nil, nil, ctx.Err()
			}
		}
		if r.err == nil {
			return r.resp, r.body, nil
		}
		p.drop(pc, r.err)
		switch {
		case ctx.Err() != nil:
			return nil, nil, ctx.Err()
		case attempts == pipeAttempts:
			return nil, nil, r.err
		case r.free:
		case r.retry && retries < pipeRetries:
			retries++
		default:
			return nil, nil, r.err
		}
	}
}

// request is the bytes of GET path.
func (p *pipe) request(path, token string) []byte {
	b := make([]byte, 0, 128+len(path)+len(token))
	b = append(b, "GET "...)
	b = append(b, p.prefix...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, p.host...)
	if token != "" {
		b = append(b, "\r\nAuthorization: Bearer "...)
		b = append(b, token...)
	}
	return append(b, "\r\n\r\n"...)
}

// connection returns the open connection, dialling one if there is none.
// A Get that finds a dial under way waits for it, or for its own ctx.
func (p *pipe) connection(ctx context.Context) (*pipeConn, error) {
	for {
		p.mu.Lock()
		if pc := p.conn; pc != nil {
			p.mu.Unlock()
			return pc, nil
		}
		if wait := p.dialing; wait != nil {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		p.dialing = done
		p.mu.Unlock()
		pc, err := p.dial(ctx)
		p.mu.Lock()
		p.dialing = nil
		if err == nil {
			p.conn = pc
		}
		p.mu.Unlock()
		close(done)
		return pc, err
	}
}

func (p *pipe) dial(ctx context.Context) (*pipeConn, error) {
	var c net.Conn
	var err error
	if p.tls != nil {
		c, err = (&tls.Dialer{Config: p.tls}).DialContext(ctx, "tcp", p.addr)
	} else {
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", p.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("slipstream: %w", err)
	}
	pc := &pipeConn{c: c}
	go pc.readLoop()
	return pc, nil
}

// drop forgets pc, if it is still the pipe's connection, and ends it.
func (p *pipe) drop(pc *pipeConn, why error) {
	p.mu.Lock()
	if p.conn == pc {
		p.conn = nil
	}
	p.mu.Unlock()
	pc.fail(why)
}

// close ends the pipe's connection.
func (p *pipe) close() {
	p.mu.Lock()
	pc := p.conn
	p.conn = nil
	p.mu.Unlock()
	if pc != nil {
		pc.fail(errors.New("the client was closed"))
	}
}

// stuck says whether the oldest request on pc has waited pipeStuck.
func (pc *pipeConn) stuck() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.calls) > 0 && time.Since(pc.calls[0].sent) >= pipeStuck
}

// send queues a request and its call, and writes it unless another send
// is writing, which then writes it too: the requests that gather while one
// write is under way leave in the next.
func (pc *pipeConn) send(req []byte) (*pipeCall, error) {
	call := &pipeCall{done: make(chan pipeResult, 1), sent: time.Now()}
	pc.mu.Lock()
	if err := cmp.Or(pc.err, pc.werr); err != nil {
		pc.mu.Unlock()
		return nil, err
	}
	pc.out = append(pc.out, req...)
	pc.calls = append(pc.calls, call)
	if pc.writing {
		pc.mu.Unlock()
		return call, nil
	}
	pc.writing = true
	// Let the goroutines that are ready to run (those whose answers just
	// came, typically) queue their requests first: they leave together. In
	// make bench's reads (8 goroutines, 2026-12-07 20:31-20:33 UTC) this
	// made 80.5k-83.8k reads/s at 14.9-15.9 µs of CPU each, against
	// 64.4k-64.7k at 20.0-20.8 µs writing at once. A program whose other
	// goroutines keep the CPU busy pays for it with a wait for a turn.
	pc.mu.Unlock()
	runtime.Gosched()
	pc.mu.Lock()
	for len(pc.out) > 0 && pc.err == nil {
		buf := pc.out
		pc.out = pc.spare[:0]
		pc.mu.Unlock()
		_ = pc.c.SetWriteDeadline(time.Now().Add(pipeWriteTimeout))
		_, err := pc.c.Write(buf)
		pc.mu.Lock()
		pc.spare = buf
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				pc.mu.Unlock()
				pc.fail(err) // the service stopped reading: call's result is the error
				return call, nil
			}
			// The service closed the connection, perhaps after answers
			// still to be read (one that says it closes makes the calls
			// behind it free to go again): no more writes, and the reader
			// ends the connection when it has read what came.
			pc.werr = err
			pc.out = nil
			pc.writing = false
			pc.mu.Unlock()
			return call, nil
		}
	}
	pc.writing = false
	pc.mu.Unlock()
	return call, nil
}

// readLoop reads the responses, each to the oldest call waiting.
func (pc *pipeConn) readLoop() {
	br := bufio.NewReader(pc.c)
	for {
		resp, err := http.ReadResponse(br, getRequest)
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			err = errors.New("the server switched protocols")
		}
		if err == nil && resp.StatusCode < 200 {
			continue // an interim answer (103 Early Hints): the final one follows
		}
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			pc.fail(err)
			return
		}
		pc.mu.Lock()
		if len(pc.calls) == 0 {
			pc.mu.Unlock()
			pc.fail(errors.New("a response to no request"))
			return
		}
		call := pc.calls[0]
		pc.calls[0] = nil
		pc.calls = pc.calls[1:]
		pc.answers++
		closing := resp.Close
		pc.mu.Unlock()
		call.done <- pipeResult{resp: resp, body: body}
		if closing {
			// The server closes the connection after this answer: the
			// calls queued behind it were not read, and go again.
			pc.end(errors.New("the server closed the connection"), true)
			return
		}
	}
}

// fail ends the connection: every call still waiting gets err.
func (pc *pipeConn) fail(err error) { pc.end(err, false) }

// end ends the connection; free says the calls waiting were not read by
// the server (they may go again without counting as a retry).
func (pc *pipeConn) end(err error, free bool) {
	pc.mu.Lock()
	if pc.err != nil {
		pc.mu.Unlock()
		return
	}
	pc.err = err
	calls, retry := pc.calls, pc.answers > 0
	pc.calls, pc.out = nil, nil
	pc.mu.Unlock()
	_ = pc.c.Close()
	for _, call := range calls {
		call.done <- pipeResult{err: fmt.Errorf("slipstream: %w", err), retry: retry, free: free}
	}
}

// getPipelined is Get without read options, on the pipe.
func (c *Client) getPipelined(ctx context.Context, fold, key string) (Entry, Position, error) {
	resp, body, err := c.pipe.get(ctx, foldPath(fold, "/keys/"+url.PathEscape(key)), c.token)
	if err != nil {
		return Entry{}, Position{}, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		e := errorOf(resp)
		return Entry{}, e.Position, e
	}
	return entryOf(key, body, resp.Header)
}

// entryOf is the Entry of a key read's value and headers.
func entryOf(key string, value []byte, h http.Header) (Entry, Position, error) {
	at, _ := positionOf(h)
	rev, err := strconv.ParseUint(h.Get(revisionHeader), 10, 64)
	if err != nil {
		return Entry{}, at, fmt.Errorf("slipstream: get %s: bad %s header %q", key, revisionHeader, h.Get(revisionHeader))
	}
	if value == nil {
		value = []byte{}
	}
	return Entry{Key: key, Value: value, Revision: rev}, at, nil
}
