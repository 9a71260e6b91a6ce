package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Entry is one key of a fold: its value as the fold holds it (after the
// fold's transforms) and its revision, the stream sequence of the write
// behind it.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
}

// Item is one key of a BatchGet: the entry, when Found.
type Item struct {
	Entry
	Found bool
}

// ReadOption changes a read (Get, BatchGet, Scan).
type ReadOption func(*readSettings)

type readSettings struct {
	minCursor uint64
	wait      time.Duration
	pageSize  int
	after     *string
	position  *Position
}

// MinCursor makes the read wait until the fold has applied cursor n, for
// read-your-writes: n is the revision nats.go reported for a write. The
// server waits up to wait (at most 5m; 0 is the server's default, 10s) and
// then fails with ErrNotReached. For a Scan it applies to every page.
func MinCursor(n uint64, wait time.Duration) ReadOption {
	return func(s *readSettings) { s.minCursor, s.wait = n, wait }
}

// PageSize sets the keys per page of a Scan (1 to 10000; default 1000).
// Other reads ignore it.
func PageSize(n int) ReadOption { return func(s *readSettings) { s.pageSize = n } }

// StartAfter makes a Scan begin after key rather than at the first key of
// its prefix. Other reads ignore it.
func StartAfter(key string) ReadOption { return func(s *readSettings) { s.after = &key } }

// ScanPosition stores in *p the position of a Scan's first page once it
// has arrived: the whole scan reflects every commit up to it (later pages
// may reflect later ones too), so a Watch from *p misses nothing the scan
// did not show. Other reads return their position and ignore it.
func ScanPosition(p *Position) ReadOption { return func(s *readSettings) { s.position = p } }

func readOptions(opts []ReadOption) readSettings {
	var s readSettings
	for _, o := range opts {
		o(&s)
	}
	return s
}

// query adds min_cursor and wait to q.
func (s *readSettings) query(q url.Values) url.Values {
	if s.minCursor == 0 {
		return q
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("min_cursor", strconv.FormatUint(s.minCursor, 10))
	if s.wait > 0 {
		q.Set("wait", s.wait.String())
	}
	return q
}

// wireEntry is an entry as the API writes it: UTF-8 values as text, other
// values in base64.
type wireEntry struct {
	Key         string  `json:"key"`
	Revision    uint64  `json:"revision"`
	Value       *string `json:"value"`
	ValueBase64 []byte  `json:"value_base64"`
	Found       *bool   `json:"found"`
}

func (w *wireEntry) entry() Entry {
	e := Entry{Key: w.Key, Revision: w.Revision, Value: w.ValueBase64}
	if w.Value != nil {
		e.Value = []byte(*w.Value)
	}
	if e.Value == nil {
		e.Value = []byte{}
	}
	return e
}

// Get reads key from fold. An absent key is an error matching ErrNotFound,
// which carries the position the answer reflects.
func (c *Client) Get(ctx context.Context, fold, key string, opts ...ReadOption) (Entry, Position, error) {
	s := readOptions(opts)
	if c.pipe != nil && s.minCursor == 0 && fastPath(fold, key) {
		return c.getPipelined(ctx, fold, key)
	}
	resp, err := c.do(ctx, http.MethodGet, foldPath(fold, "/keys/"+url.PathEscape(key)), s.query(nil), nil, http.StatusOK, nil)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return Entry{}, e.Position, err
		}
		return Entry{}, Position{}, err
	}
	defer resp.Body.Close()
	value, err := io.ReadAll(resp.Body)
	if err != nil {
		return Entry{}, Position{}, fmt.Errorf("slipstream: get %s: %w", key, err)
	}
	return entryOf(key, value, resp.Header)
}

// fastPath says whether the service's fast server answers a Get of key
// from fold: a request it leaves to net/http would take the pipe's
// connection with it, for good.
func fastPath(fold, key string) bool {
	return key != "" && fold != "" && fold != "." && fold != ".." && url.PathEscape(fold) == fold
}

// BatchGet reads keys (1 to 1000) from fold at one position, and answers
// one Item per key, in the order asked; an absent key's Item is not Found.
func (c *Client) BatchGet(ctx context.Context, fold string, keys []string, opts ...ReadOption) ([]Item, Position, error) {
	s := readOptions(opts)
	body, err := json.Marshal(struct {
		Keys []string `json:"keys"`
	}{keys})
	if err != nil {
		return nil, Position{}, err
	}
	resp, err := c.do(ctx, http.MethodPost, foldPath(fold, "/keys:batchGet"), s.query(nil), bytes.NewReader(body), http.StatusOK, nil)
	if err != nil {
		return nil, Position{}, err
	}
	defer resp.Body.Close()
	var res struct {
		Entries    []wireEntry `json:"entries"`
		Generation int         `json:"generation"`
		Cursor     uint64      `json:"cursor"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, Position{}, fmt.Errorf("slipstream: batchGet: decoding the answer: %w", err)
	}
	if len(res.Entries) != len(keys) {
		return nil, Position{}, fmt.Errorf("slipstream: batchGet: %d entries for %d keys", len(res.Entries), len(keys))
	}
	items := make([]Item, len(res.Entries))
	for i := range res.Entries {
		w := &res.Entries[i]
		items[i] = Item{Entry: w.entry(), Found: w.Found == nil || *w.Found}
		if !items[i].Found {
			items[i].Value = nil
		}
	}
	return items, Position{Generation: res.Generation, Cursor: res.Cursor}, nil
}

// Scan iterates over the keys of fold that start with prefix, in key
// order, a page at a time. It stops at the first error, which it yields
// (with a zero Entry). ScanPosition gives the position of the first page.
//
// A scan is not one snapshot: a later page reflects at least the commits
// of the first. Should the fold publish another generation (a rebuild)
// between two pages, the scan stops with an error, as its pages would not
// belong together; scan again.
func (c *Client) Scan(ctx context.Context, fold, prefix string, opts ...ReadOption) iter.Seq2[Entry, error] {
	s := readOptions(opts)
	return func(yield func(Entry, error) bool) {
		q := url.Values{"prefix": {prefix}}
		if s.pageSize > 0 {
			q.Set("limit", strconv.Itoa(s.pageSize))
		}
		if s.after != nil {
			q.Set("after", *s.after)
		}
		var first Position
		for {
			var page struct {
				Entries    []wireEntry `json:"entries"`
				Next       string      `json:"next"`
				Generation int         `json:"generation"`
				Cursor     uint64      `json:"cursor"`
			}
			if _, err := c.getJSON(ctx, foldPath(fold, "/keys"), s.query(q), &page); err != nil {
				yield(Entry{}, err)
				return
			}
			at := Position{Generation: page.Generation, Cursor: page.Cursor}
			if first.IsZero() {
				first = at
				if s.position != nil {
					*s.position = at
				}
			} else if at.Generation != first.Generation {
				yield(Entry{}, fmt.Errorf("slipstream: scan of %s: the fold went from generation %d to %d between two pages; scan again", fold, first.Generation, at.Generation))
				return
			}
			for i := range page.Entries {
				if !yield(page.Entries[i].entry(), nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			q.Set("after", page.Next)
		}
	}
}

// Status is a fold's state as the service reports it (GET /v1/folds/FOLD).
type Status struct {
	Name   string   `json:"name"`
	Bucket string   `json:"bucket"`
	Scope  []string `json:"scope"`
	// State is one of starting, bootstrapping, synced, rebuilding,
	// reconciling, stalled and stopped; Reason says why, when stalled.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Ready: the fold has caught up and answers reads.
	Ready bool `json:"ready"`
	// Stale: readers see the previous generation while a rebuild catches up.
	Stale      bool   `json:"stale"`
	Generation int    `json:"generation"`
	Cursor     uint64 `json:"cursor"`
	StreamLast uint64 `json:"stream_last_seq"`
	Lag        uint64 `json:"lag"`
	Pending    uint64 `json:"pending"`
	Keys       uint64 `json:"keys"`
	Bytes      uint64 `json:"bytes"`
	// StoreError is why Keys and Bytes are unknown (0): the store was asked
	// and did not answer. A fold with no generation yet has neither.
	StoreError string `json:"store_error,omitempty"`
	Store      string `json:"store,omitempty"`
	// SyncedAt is when the fold was last caught up.
	SyncedAt time.Time `json:"synced_at,omitzero"`
	// StreamCreated is the creation time of the stream the fold follows.
	StreamCreated time.Time `json:"stream_created,omitzero"`

	// Raw is the status as the service wrote it, with any field this
	// package does not know.
	Raw json.RawMessage `json:"-"`
}

// Status reports the state of fold.
func (c *Client) Status(ctx context.Context, fold string) (Status, error) {
	var raw json.RawMessage
	if _, err := c.getJSON(ctx, foldPath(fold, ""), nil, &raw); err != nil {
		return Status{}, err
	}
	return statusOf(raw)
}

// Folds reports the state of every fold of the service, in the order of
// its config.
func (c *Client) Folds(ctx context.Context) ([]Status, error) {
	var list struct {
		Folds []json.RawMessage `json:"folds"`
	}
	if _, err := c.getJSON(ctx, "/v1/folds", nil, &list); err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(list.Folds))
	for _, raw := range list.Folds {
		st, err := statusOf(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func statusOf(raw json.RawMessage) (Status, error) {
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return Status{}, fmt.Errorf("slipstream: decoding a fold's status: %w", err)
	}
	st.Raw = raw
	return st, nil
}
