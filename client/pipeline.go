package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/valyala/fasthttp"
)

// pipeConns is how many connections a Client's plain Gets share. The
// service answers the requests pipelined on a connection in order, with
// one write for those that arrived together, so that on one connection
// many goroutines' reads cost a fraction of a request each (as nats.go's
// requests share one connection). A second connection halves the batches:
// in make bench's reads (8 goroutines, 300k keys, 2026-12-07) 1.65-1.67×
// kv.Get's reads/s against 2.06-2.30× with one; on the miss path, where
// the service asks its store, 0.50× against 0.44×.
const pipeConns = 1

// newPipe returns the pipelining client of the service at u, whose TLS
// configuration (https) is cfg, or the system's when nil.
func newPipe(u *url.URL, cfg *tls.Config) *fasthttp.PipelineClient {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	p := &fasthttp.PipelineClient{
		Addr:                     net.JoinHostPort(host, port),
		IsTLS:                    u.Scheme == "https",
		MaxConns:                 pipeConns,
		MaxPendingRequests:       4096,
		DisablePathNormalizing:   true, // an escaped key is sent as escaped
		NoDefaultUserAgentHeader: true,
	}
	if cfg != nil {
		p.TLSConfig = cfg.Clone()
	}
	return p
}

// pipelinedGet GETs path (a plain key read, no query) through c.pipe into
// resp, bounded by ctx.
func (c *Client) pipelinedGet(ctx context.Context, path string, resp *fasthttp.Response) error {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(c.base + path)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	var err error
	if deadline, ok := ctx.Deadline(); ok {
		err = c.pipe.DoDeadline(req, resp, deadline)
	} else if ctx.Done() == nil {
		err = c.pipe.Do(req, resp)
	} else {
		// Cancellable without a deadline: the request goes on in a
		// goroutine of its own, with a request and response of its own, so
		// that a cancelled Get can return at once.
		own, got := &fasthttp.Request{}, &fasthttp.Response{}
		req.CopyTo(own)
		done := make(chan error, 1)
		go func() { done <- c.pipe.Do(own, got) }()
		select {
		case err = <-done:
			got.CopyTo(resp)
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, fasthttp.ErrTimeout) {
			err = cerr
		}
		return fmt.Errorf("slipstream: GET %s: %w", path, err)
	}
	return nil
}

// getPipelined is Get without read options, through the pipelining client.
func (c *Client) getPipelined(ctx context.Context, fold, key string) (Entry, Position, error) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := c.pipelinedGet(ctx, foldPath(fold, "/keys/"+url.PathEscape(key)), resp); err != nil {
		return Entry{}, Position{}, err
	}
	if resp.StatusCode() != http.StatusOK {
		h := http.Header{}
		for _, name := range []string{generationHeader, cursorHeader, "Retry-After"} {
			if v := resp.Header.Peek(name); v != nil {
				h.Set(name, string(v))
			}
		}
		e := errorOf(&http.Response{StatusCode: resp.StatusCode(), Status: strconv.Itoa(resp.StatusCode()) + " " + http.StatusText(resp.StatusCode()),
			Header: h, Body: io.NopCloser(bytes.NewReader(resp.Body()))})
		return Entry{}, e.Position, e
	}
	g, err1 := strconv.Atoi(string(resp.Header.Peek(generationHeader)))
	cursor, err2 := strconv.ParseUint(string(resp.Header.Peek(cursorHeader)), 10, 64)
	var at Position
	if err1 == nil && err2 == nil {
		at = Position{Generation: g, Cursor: cursor}
	}
	rev, err := strconv.ParseUint(string(resp.Header.Peek(revisionHeader)), 10, 64)
	if err != nil {
		return Entry{}, at, fmt.Errorf("slipstream: get %s: bad %s header %q", key, revisionHeader, resp.Header.Peek(revisionHeader))
	}
	return Entry{Key: key, Value: append([]byte{}, resp.Body()...), Revision: rev}, at, nil
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
