package client

import (
	"bufio"
	"bytes"
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

// pipe is the connection of a Client's plain Gets, dialled when first
// needed and again after it fails.
type pipe struct {
	addr   string      // host:port to dial
	host   string      // the Host header
	tls    *tls.Config // nil for http://
	prefix string      // the base URL's path, before every request's

	mu   sync.Mutex
	conn *pipeConn
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
	spare   []byte      // the buffer out had before the last write
	writing bool        // a send is writing out
	reused  bool        // a call's response was read on it
}

// pipeCall is one Get waiting for its response.
type pipeCall struct {
	done chan pipeResult // buffered: an abandoned call's result is dropped
}

type pipeResult struct {
	resp  *http.Response // the body read into body
	body  []byte
	err   error
	fresh bool // the call was sent on a connection no response had come on
}

var getRequest = &http.Request{Method: http.MethodGet}

// get sends GET path on the pipe and waits for the answer or ctx. A
// connection that fails under a request sent on it after earlier answers
// (the server closed it while idle) is retried once on a new one, as the
// request is a read.
func (p *pipe) get(ctx context.Context, path, token string) (*http.Response, []byte, error) {
	for attempt := 0; ; attempt++ {
		pc, err := p.connection(ctx)
		if err != nil {
			return nil, nil, err
		}
		call, fresh, err := pc.send(p.request(path, token))
		if err != nil {
			p.drop(pc)
			if attempt == 0 && !fresh {
				continue
			}
			return nil, nil, err
		}
		select {
		case r := <-call.done:
			if r.err != nil {
				p.drop(pc)
				if attempt == 0 && !r.fresh && ctx.Err() == nil {
					continue
				}
				return nil, nil, r.err
			}
			return r.resp, r.body, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
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
func (p *pipe) connection(ctx context.Context) (*pipeConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		return p.conn, nil
	}
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
	p.conn = pc
	return pc, nil
}

// drop forgets pc, if it is still the pipe's connection, and closes it.
func (p *pipe) drop(pc *pipeConn) {
	p.mu.Lock()
	if p.conn == pc {
		p.conn = nil
	}
	p.mu.Unlock()
	pc.fail(errors.New("connection closed"))
}

// send queues a request and its call, and writes it unless another send
// is writing, which then writes it too: the requests that gather while one
// write is under way leave in the next. fresh says that no response has
// been read on the connection yet.
func (pc *pipeConn) send(req []byte) (*pipeCall, bool, error) {
	call := &pipeCall{done: make(chan pipeResult, 1)}
	pc.mu.Lock()
	fresh := !pc.reused
	if pc.err != nil {
		err := pc.err
		pc.mu.Unlock()
		return nil, fresh, err
	}
	pc.out = append(pc.out, req...)
	pc.calls = append(pc.calls, call)
	if pc.writing {
		pc.mu.Unlock()
		return call, fresh, nil
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
		_, err := pc.c.Write(buf)
		pc.mu.Lock()
		pc.spare = buf
		if err != nil {
			pc.mu.Unlock()
			pc.fail(err) // call's result is the error
			return call, fresh, nil
		}
	}
	pc.writing = false
	pc.mu.Unlock()
	return call, fresh, nil
}

// readLoop reads the responses, each to the oldest call waiting.
func (pc *pipeConn) readLoop() {
	br := bufio.NewReader(pc.c)
	for {
		resp, err := http.ReadResponse(br, getRequest)
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
		fresh := !pc.reused
		pc.reused = true
		closing := resp.Close
		pc.mu.Unlock()
		call.done <- pipeResult{resp: resp, body: body, fresh: fresh}
		if closing {
			// The server closes the connection after this answer: the
			// calls queued behind it are retried on a new one.
			pc.fail(errors.New("the server closed the connection"))
			return
		}
	}
}

// fail ends the connection: every call still waiting gets err.
func (pc *pipeConn) fail(err error) {
	pc.mu.Lock()
	if pc.err != nil {
		pc.mu.Unlock()
		return
	}
	pc.err = err
	calls, fresh := pc.calls, !pc.reused
	pc.calls, pc.out = nil, nil
	pc.mu.Unlock()
	_ = pc.c.Close()
	for _, call := range calls {
		call.done <- pipeResult{err: fmt.Errorf("slipstream: %w", err), fresh: fresh}
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
