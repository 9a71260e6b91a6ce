package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Headers of every read: the position its answer is at least as new as.
const (
	GenerationHeader = "Slipstream-Generation"
	// CursorHeader (shared with the artifact) carries the cursor.
)

// Bounds of ?wait=, the time a read with ?min_cursor= waits.
const (
	defaultWait = 10 * time.Second
	maxWait     = 5 * time.Minute
)

// maxBatchGet bounds the keys of one batchGet.
const maxBatchGet = 1000

func setPosition(w http.ResponseWriter, at fold.Position) {
	w.Header().Set(GenerationHeader, strconv.Itoa(at.Generation))
	w.Header().Set(CursorHeader, strconv.FormatUint(at.Cursor, 10))
}

// Behind is the body of a 504 for a read whose min_cursor the fold did not
// reach within the wait.
type Behind struct {
	Error      string `json:"error"`
	Generation int    `json:"generation"`
	Cursor     uint64 `json:"cursor"`
}

// awaitCursor makes a read wait for ?min_cursor= (read-your-writes), up to
// ?wait= (10s by default, 5m at most). It reports false when it answered
// the request: a bad query (400), a fold not ready (503), or the cursor not
// reached in time (504, with the cursor reached).
func awaitCursor(w http.ResponseWriter, r *http.Request, f *fold.Fold) bool {
	q := r.URL.Query()
	raw := q.Get("min_cursor")
	if raw == "" {
		if q.Has("wait") {
			fail(w, http.StatusBadRequest, "wait goes with min_cursor")
			return false
		}
		return true
	}
	min, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		fail(w, http.StatusBadRequest, "min_cursor must be a stream sequence, got "+strconv.Quote(raw))
		return false
	}
	wait := defaultWait
	if s := q.Get("wait"); s != "" {
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 || wait > maxWait {
			fail(w, http.StatusBadRequest, fmt.Sprintf("wait must be a duration from 0s to %s, got %q", maxWait, s))
			return false
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	at, err := f.WaitFor(ctx, min)
	switch {
	case err == nil:
		return true
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		setPosition(w, at)
		writeJSON(w, http.StatusGatewayTimeout, Behind{
			Error:      fmt.Sprintf("the fold did not reach cursor %d within %s", min, wait),
			Generation: at.Generation, Cursor: at.Cursor,
		})
	default:
		readError(w, err)
	}
	return false
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok || !awaitCursor(w, r, f) {
		return
	}
	e, at, err := f.Lookup(r.Context(), []byte(r.PathValue("key")))
	if at.Generation > 0 {
		setPosition(w, at)
	}
	if err != nil {
		readError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(RevisionHeader, strconv.FormatUint(e.Revision, 10))
	w.Header().Set("Content-Length", strconv.Itoa(len(e.Value)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.Value)
}

// Entry is one key of a scan page or a batchGet. Value holds UTF-8 values
// as text; other values come base64-encoded in ValueBase64.
type Entry struct {
	Key         string  `json:"key"`
	Revision    uint64  `json:"revision,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 []byte  `json:"value_base64,omitempty"`
	// Found is set by batchGet only: false for a key the fold does not hold.
	Found *bool `json:"found,omitempty"`
}

func entryOf(key string, value []byte, revision uint64) Entry {
	out := Entry{Key: key, Revision: revision}
	if utf8.Valid(value) {
		v := string(value)
		out.Value = &v
	} else {
		out.ValueBase64 = value
	}
	return out
}

// Page is one page of a scan. Next, when set, is the after= of the next
// page. Generation and Cursor are the position the page is at least as new
// as (also in the read headers).
type Page struct {
	Entries    []Entry `json:"entries"`
	Next       string  `json:"next,omitempty"`
	Generation int     `json:"generation"`
	Cursor     uint64  `json:"cursor"`
}

// parseScan reads the query of a scan: prefix=, after= (the last key of the
// previous page; present but empty is the empty key) and limit=, 1000 by
// default. The range asks for one entry more than the limit, to tell whether
// there is a next page.
func parseScan(q url.Values) (sdk.Range, int, error) {
	limit := 1000
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxScanLimit {
			return sdk.Range{}, 0, errors.New("limit must be a number from 1 to " + strconv.Itoa(maxScanLimit))
		}
		limit = n
	}
	rng := sdk.Range{Prefix: []byte(q.Get("prefix")), Limit: limit + 1}
	if q.Has("after") {
		rng.After = []byte(q.Get("after"))
	}
	return rng, limit, nil
}

func (a *api) scan(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	rng, limit, err := parseScan(r.URL.Query())
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if !awaitCursor(w, r, f) {
		return
	}
	// The position is taken before the store is read: the page is at least
	// as new.
	at, err := f.Position()
	if err != nil {
		readError(w, err)
		return
	}
	page := Page{Entries: []Entry{}, Generation: at.Generation, Cursor: at.Cursor}
	err = f.Scan(r.Context(), rng, func(e sdk.Entry) error {
		if len(page.Entries) == limit {
			page.Next = page.Entries[limit-1].Key
			return nil
		}
		page.Entries = append(page.Entries, entryOf(string(e.Key), e.Value, e.Revision))
		return nil
	})
	if err != nil {
		readError(w, err)
		return
	}
	setPosition(w, at)
	writeJSON(w, http.StatusOK, page)
}

// BatchGet is the body of POST /v1/folds/{fold}/keys:batchGet.
type BatchGet struct {
	Keys []string `json:"keys"`
}

// BatchResult answers a batchGet: one entry per key asked, in order.
type BatchResult struct {
	Entries    []Entry `json:"entries"`
	Generation int     `json:"generation"`
	Cursor     uint64  `json:"cursor"`
}

func (a *api) batchGet(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	var req BatchGet
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "body: want {\"keys\": [...]}: "+err.Error())
		return
	}
	if len(req.Keys) == 0 || len(req.Keys) > maxBatchGet {
		fail(w, http.StatusBadRequest, fmt.Sprintf("keys: want 1 to %d keys, got %d", maxBatchGet, len(req.Keys)))
		return
	}
	if !awaitCursor(w, r, f) {
		return
	}
	// The keys are read one by one; a publish of another generation
	// between two of them starts the batch over, once.
	for range 2 {
		res, err := batchRead(r.Context(), f, req.Keys)
		if errors.Is(err, errGenerationChanged) {
			continue
		}
		if err != nil {
			readError(w, err)
			return
		}
		setPosition(w, fold.Position{Generation: res.Generation, Cursor: res.Cursor})
		writeJSON(w, http.StatusOK, res)
		return
	}
	w.Header().Set("Retry-After", "1")
	fail(w, http.StatusServiceUnavailable, "the fold published other generations while the keys were read")
}

var errGenerationChanged = errors.New("generation changed")

// batchRead reads keys, each at least as new as the position of the first.
func batchRead(ctx context.Context, f *fold.Fold, keys []string) (BatchResult, error) {
	res := BatchResult{Entries: make([]Entry, 0, len(keys))}
	for i, k := range keys {
		e, at, err := f.Lookup(ctx, []byte(k))
		found := err == nil
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return res, err
		}
		switch {
		case i == 0:
			res.Generation, res.Cursor = at.Generation, at.Cursor
		case at.Generation != res.Generation:
			return res, errGenerationChanged
		}
		out := Entry{Key: k}
		if found {
			out = entryOf(k, e.Value, e.Revision)
		}
		out.Found = &found
		res.Entries = append(res.Entries, out)
	}
	return res, nil
}
