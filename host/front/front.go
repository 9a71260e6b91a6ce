// Package front serves the HTTP API on one listener with two servers.
//
// fasthttp answers the plain key reads, the API's hot path: it costs a
// fraction of net/http's CPU per request, and answers the requests a
// client pipelines on a connection with one write. The first request of
// any other kind hands its connection, that request first, to net/http,
// which serves everything on it from then on with its own semantics: a
// request's context that ends when its client goes away, write deadlines,
// streaming (the change stream), Expect handling. Only a read that fasthttp
// answers never reaches net/http.
package front

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Limits of the fast server, which net/http's are not lower than: a
// request's headers (and its request line) must fit in readBuffer, a
// request body (buffered before it is handed over) in maxBody.
const (
	readBuffer = 64 << 10
	// maxBody is the API's largest (a batchGet's 4 MiB) with room for
	// net/http to refuse what is over it with its own answer. fasthttp
	// reads a body before the token is checked: this bounds what an
	// unauthenticated client can make it hold.
	maxBody     = 4<<20 + 64<<10
	readTimeout = 10 * time.Second // a request's headers and body
	idleTimeout = 5 * time.Minute  // a connection between two requests
)

// Options are what a Server serves.
type Options struct {
	// Read answers the requests fasthttp serves, reporting true; for any
	// other it writes nothing and reports false, and the connection goes
	// to HTTP. Nil sends every connection to HTTP at its first request.
	Read func(*fasthttp.RequestCtx) bool
	// HTTP serves every request that Read does not.
	HTTP http.Handler
	// Log receives the servers' errors (at debug level: they are a
	// client's doing, such as a malformed request); nil discards them.
	Log *slog.Logger
}

// Server is the API's HTTP server: see the package comment.
type Server struct {
	read  func(*fasthttp.RequestCtx) bool
	fast  *fasthttp.Server
	slow  *http.Server
	conns *connQueue
	down  atomic.Bool
	// What the fast server did with the requests it read.
	reads, handovers atomic.Uint64
}

// Counts reports the requests the fast server answered itself (Read's)
// and the connections it handed to net/http.
func (s *Server) Counts() (reads, handovers uint64) {
	return s.reads.Load(), s.handovers.Load()
}

// New returns a Server of o.
func New(o Options) *Server {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{read: o.Read, conns: newConnQueue()}
	s.slow = &http.Server{
		Handler:           o.HTTP,
		ReadHeaderTimeout: readTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	s.fast = &fasthttp.Server{
		Handler:                      s.serve,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		ReadBufferSize:               readBuffer,
		MaxRequestBodySize:           maxBody,
		ReadTimeout:                  readTimeout,
		IdleTimeout:                  idleTimeout,
		DisablePreParseMultipartForm: true,
		KeepHijackedConns:            true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true, // a malformed request's bytes may hold a token
		Logger:                       fastLogger{log},
	}
	return s
}

// Serve serves the API on ln until Shutdown, which makes it return
// http.ErrServerClosed, or until ln fails.
func (s *Server) Serve(ln net.Listener) error {
	s.conns.addr = ln.Addr()
	slow := make(chan error, 1)
	go func() { slow <- s.slow.Serve(s.conns) }()
	err := s.fast.Serve(ln)
	if s.down.Load() {
		<-slow
		return http.ErrServerClosed
	}
	// The listener failed, or was closed under the server: stop the other
	// half too.
	s.conns.close()
	_ = s.slow.Close()
	<-slow
	if err == nil {
		err = errors.New("the listener was closed")
	}
	return err
}

// Shutdown stops accepting connections, waits for the requests in
// progress to end (or ctx: then the connections left are closed), and
// makes Serve return.
func (s *Server) Shutdown(ctx context.Context) error {
	s.down.Store(true)
	err := s.fast.ShutdownWithContext(ctx)
	s.conns.close()
	if serr := s.slow.Shutdown(ctx); serr != nil {
		err = errors.Join(err, serr, s.slow.Close())
	}
	return err
}

// serve is the fast server's handler: Read's request, or the connection
// handed to net/http.
func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	if s.read != nil && s.read(ctx) {
		s.reads.Add(1)
		return
	}
	s.handovers.Add(1)
	// The request goes on as it was sent: its request line as read (the
	// URI unparsed, for net/http to clean or refuse as it does), its
	// headers, and the body fasthttp read, framed by its length.
	// fasthttp answered a 100-continue itself; net/http must not again.
	h := &ctx.Request.Header
	h.Del("Expect")
	h.SetNoDefaultContentType(true)
	body := ctx.Request.Body()
	if len(body) > 0 || h.ContentLength() == -1 { // -1: it came chunked
		h.SetContentLength(len(body))
	}
	first := append(append([]byte(nil), h.Header()...), body...)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		// No deadline of the fast server's may cut net/http's reads.
		_ = c.SetDeadline(time.Time{})
		s.conns.put(&replayConn{Conn: c, first: first})
	})
}

// replayConn is a connection handed to net/http: its reads return the
// request that the fast server read first, then what follows it on the
// connection (which the hijacked connection's reads give, buffered bytes
// first).
type replayConn struct {
	net.Conn
	first []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// connQueue is the listener net/http serves: the connections handed over.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

// put hands c to net/http, or closes it once the server is shutting down.
func (q *connQueue) put(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		_ = c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) close() { q.once.Do(func() { close(q.done) }) }

// Close is net/http's (Shutdown closes its listeners).
func (q *connQueue) Close() error { q.close(); return nil }

func (q *connQueue) Addr() net.Addr { return q.addr }

// fastLogger passes fasthttp's messages to slog.
type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	l.log.Debug("http api: " + fmt.Sprintf(format, args...))
}
