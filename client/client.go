// Package client reads the folds of a running slipstream service over its
// HTTP API, for applications written in Go.
//
// A Client reads keys (Get, BatchGet), pages through them (Scan), reports
// the folds' status (Status, Folds) and follows their changes (Watch).
// Share one Client between goroutines: its Gets without read options go
// pipelined over one connection, where the service answers those that
// arrive together with one write, which makes a read cost a fraction of a
// request on a connection of its own.
//
// # Positions
//
// Every read answers with a Position: a generation of the fold and a cursor
// (a stream sequence of the fold's bucket). The answer reflects every
// commit up to that cursor of that generation, perhaps later ones too. A
// Watch from a Position delivers every change committed after it, each
// once, in commit order. The revision of a write (as nats.go reports it) is
// a cursor: MinCursor(revision, wait) makes a read wait until the fold has
// applied that write (read-your-writes).
//
// A fold rebuilt from its bucket starts a new generation, and the changes
// after a position of the old one cannot be delivered. Nor can they when
// the position is older than the changes the service keeps, or when a
// watcher falls too far behind. The stream then ends with a Reset event:
// read the fold again (Scan) and watch from the position of that read. Sync
// does both for you.
package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The headers of the API that the client reads and sends.
const (
	generationHeader = "Slipstream-Generation"
	cursorHeader     = "Slipstream-Cursor"
	revisionHeader   = "Slipstream-Revision"
)

// Client calls one slipstream service. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host[:port][/path], without a trailing slash
	hc    *http.Client
	token string
	// pipe carries the plain Gets (no read options), pipelined; nil with
	// WithHTTPClient, whose client carries every request.
	pipe *pipe
}

// Option configures a Client (New).
type Option func(*settings) error

type settings struct {
	hc    *http.Client
	token string
	tls   *tls.Config
}

// WithHTTPClient sends the requests through hc instead of a client of the
// package's own, Get's included: without it, a Get without read options
// goes through a connection that the Client's Gets share, pipelined, which
// costs the service and the application several times less per read than
// a request on a connection of its own. That connection goes to the
// service directly, never through an HTTP proxy. Give hc no Timeout: a Watch streams for as long as it
// runs (reads are bounded by their context instead), and a timeout cuts
// the stream, which Watch then resumes, over and over.
func WithHTTPClient(hc *http.Client) Option {
	return func(s *settings) error {
		if hc == nil {
			return errors.New("client: WithHTTPClient(nil)")
		}
		s.hc = hc
		return nil
	}
}

// WithToken sends token as a bearer token (Authorization: Bearer TOKEN)
// with every request, for an API with [http] token_file.
func WithToken(token string) Option {
	return func(s *settings) error {
		if token == "" {
			return errors.New("client: WithToken with an empty token")
		}
		for _, c := range []byte(token) {
			if c < 0x20 || c == 0x7f {
				return errors.New("client: WithToken: the token holds a control character")
			}
		}
		s.token = token
		return nil
	}
}

// WithTLSConfig uses cfg for an https:// API (for instance RootCAs holding
// a private CA). With WithHTTPClient, that client's transport must be an
// *http.Transport; it is cloned, not changed.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(s *settings) error {
		if cfg == nil {
			return errors.New("client: WithTLSConfig(nil)")
		}
		s.tls = cfg
		return nil
	}
}

// New returns a client of the service whose API is at baseURL: host:port
// (plain HTTP), or an http:// or https:// URL.
// idleConns is how many idle connections to the service a Client built
// without WithHTTPClient keeps.
const idleConns = 64

func New(baseURL string, opts ...Option) (*Client, error) {
	var s settings
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, err
		}
	}
	if !strings.Contains(baseURL, "://") {
		baseURL = "http://" + baseURL
	}
	u, err := url.Parse(baseURL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("client: base URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("client: base URL %q: want http:// or https://", baseURL)
	case u.Host == "":
		return nil, fmt.Errorf("client: base URL %q has no host", baseURL)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("client: base URL %q: want no query or fragment", baseURL)
	}
	c := &Client{base: strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), hc: s.hc, token: s.token}
	if c.hc == nil {
		// An app reads from one service, from many goroutines: keep a
		// connection per concurrent reader instead of net/http's default
		// two, which makes the others dial a new one per request.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = idleConns
		c.hc = &http.Client{Transport: t}
		c.pipe = newPipe(u, s.tls)
	}
	if s.tls != nil {
		t, ok := c.hc.Transport.(*http.Transport)
		if c.hc.Transport == nil {
			t, ok = http.DefaultTransport.(*http.Transport), true
		}
		if !ok {
			return nil, fmt.Errorf("client: WithTLSConfig needs an *http.Transport, the HTTP client has a %T", c.hc.Transport)
		}
		t = t.Clone()
		t.TLSClientConfig = s.tls.Clone()
		hc := *c.hc
		hc.Transport = t
		c.hc = &hc
	}
	return c, nil
}

// Close closes the Client's idle connections, the pipelined one of its
// Gets included; a Get made later opens another. A Client that is dropped
// without Close keeps that connection until the service closes it (after
// 5 minutes idle).
func (c *Client) Close() {
	if c.pipe != nil {
		c.pipe.close()
	}
	c.hc.CloseIdleConnections()
}

// Position is where a read or a change stream stands: every commit up to
// Cursor of the fold's generation Generation. The zero Position means "now"
// where a position is taken (WatchOptions.From).
type Position struct {
	Generation int
	Cursor     uint64
}

// String formats p as the API does: GENERATION.CURSOR.
func (p Position) String() string {
	return strconv.Itoa(p.Generation) + "." + strconv.FormatUint(p.Cursor, 10)
}

// IsZero reports whether p is the zero Position.
func (p Position) IsZero() bool { return p == Position{} }

// ParsePosition reads GENERATION.CURSOR, as Position.String writes it.
func ParsePosition(s string) (Position, error) {
	g, c, ok := strings.Cut(s, ".")
	gen, err1 := strconv.Atoi(g)
	cursor, err2 := strconv.ParseUint(c, 10, 64)
	if !ok || err1 != nil || err2 != nil || gen < 1 {
		return Position{}, fmt.Errorf("position %q: want GENERATION.CURSOR, such as 3.1042", s)
	}
	return Position{Generation: gen, Cursor: cursor}, nil
}

// positionOf reads the position headers of a read's answer; ok is false
// when the answer has none.
func positionOf(h http.Header) (_ Position, ok bool) {
	g, err1 := strconv.Atoi(h.Get(generationHeader))
	c, err2 := strconv.ParseUint(h.Get(cursorHeader), 10, 64)
	if err1 != nil || err2 != nil {
		return Position{}, false
	}
	return Position{Generation: g, Cursor: c}, true
}

// Errors that the errors of the client match with errors.Is.
var (
	// ErrNotFound: the fold does not hold the key (Get).
	ErrNotFound = errors.New("key not found")
	// ErrNoFold: the service has no fold of that name.
	ErrNoFold = errors.New("no such fold")
	// ErrNotReached: the fold did not apply the MinCursor within the wait;
	// the *Error's Position is where it was.
	ErrNotReached = errors.New("cursor not reached")
	// ErrUnavailable: the fold cannot answer now (503: not ready yet, or
	// its store is restarting); retry after the *Error's RetryAfter.
	ErrUnavailable = errors.New("fold unavailable")
	// ErrUnauthorized: the API wants a bearer token (WithToken), or
	// another one.
	ErrUnauthorized = errors.New("unauthorized")
)

// Error is an answer of the API other than success: its HTTP status and
// the server's message. Match it with errors.Is against ErrNotFound,
// ErrNoFold, ErrNotReached, ErrUnavailable and ErrUnauthorized, or with
// errors.As for the details.
type Error struct {
	StatusCode int    // the HTTP status code
	Message    string // the server's "error", or the start of its body
	// Position is where the fold was, when the answer says (a 404 for an
	// absent key, a 504 for a MinCursor not reached).
	Position Position
	// RetryAfter is the server's Retry-After (on 503), or 0.
	RetryAfter time.Duration

	hasPosition bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("slipstream: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Is matches the Err* values of the package. A 404 for an absent key is
// told from one for an unknown fold by the position the first carries.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound && e.hasPosition
	case ErrNoFold:
		return e.StatusCode == http.StatusNotFound && !e.hasPosition
	case ErrNotReached:
		return e.StatusCode == http.StatusGatewayTimeout
	case ErrUnavailable:
		return e.StatusCode == http.StatusServiceUnavailable
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	}
	return false
}

// errorOf reads a failed answer into an *Error and closes its body.
func errorOf(resp *http.Response) *Error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{StatusCode: resp.StatusCode}
	var msg struct {
		Error      string  `json:"error"`
		Generation *int    `json:"generation"`
		Cursor     *uint64 `json:"cursor"`
	}
	if json.Unmarshal(body, &msg) == nil && msg.Error != "" {
		e.Message = msg.Error
	} else {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
	}
	if e.Message == "" {
		e.Message = resp.Status
	}
	e.Position, e.hasPosition = positionOf(resp.Header)
	if !e.hasPosition && msg.Generation != nil && msg.Cursor != nil && *msg.Generation > 0 {
		e.Position, e.hasPosition = Position{Generation: *msg.Generation, Cursor: *msg.Cursor}, true
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// foldPath is the path of a fold's resource: /v1/folds/FOLD + rest.
func foldPath(fold, rest string) string { return "/v1/folds/" + url.PathEscape(fold) + rest }

// do sends a request and returns the answer when its status is want; any
// other status is an *Error.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, want int, h http.Header) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("slipstream: %w", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("slipstream: %w", err)
	}
	if resp.StatusCode != want {
		return nil, errorOf(resp)
	}
	return resp, nil
}

// getJSON GETs path and decodes its JSON answer into v, returning the
// answer's position headers.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) (Position, error) {
	resp, err := c.do(ctx, http.MethodGet, path, q, nil, http.StatusOK, nil)
	if err != nil {
		return Position{}, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return Position{}, fmt.Errorf("slipstream: GET %s: decoding the answer: %w", path, err)
	}
	at, _ := positionOf(resp.Header)
	return at, nil
}
