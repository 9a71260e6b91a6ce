// Package api serves the local HTTP API: fold status, key reads, scans,
// readiness and metrics. It reads folds; it never changes them.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/objstore"
	"github.com/slipstreamkv/slipstream/host/reconcile"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Headers of GET .../artifact: the exported cursor and content hash.
const (
	CursorHeader      = "Slipstream-Cursor"
	ContentHashHeader = "Slipstream-Content-Hash"
	// ArtifactType is the media type of an artifact.
	ArtifactType = "application/vnd.slipstream.artifact"
)

// RevisionHeader carries a key's revision on GET .../keys/{key}.
const RevisionHeader = "Slipstream-Revision"

// maxScanLimit bounds one page of a scan.
const maxScanLimit = 10000

// Options are the API's settings beyond its folds.
type Options struct {
	// Producer names the service in the artifacts it exports.
	Producer string
	// TempDir holds the exports' temporary files; "" is the system's.
	TempDir string
	// Publish, when set, serves POST /v1/folds/{fold}/artifact?to=URL: it
	// exports the fold named fold and publishes the artifact to the Object
	// Store series URL (nats-object://BUCKET/NAME).
	Publish func(ctx context.Context, fold, to string, replicas int) (objstore.Pointer, error)
}

// Handler returns the API over folds, with /metrics from g.
func Handler(folds []*fold.Fold, g prometheus.Gatherer, o Options) http.Handler {
	a := &api{folds: map[string]*fold.Fold{}, order: folds, producer: o.Producer, tempDir: o.TempDir, publish: o.Publish}
	for _, f := range folds {
		a.folds[f.Name()] = f
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/folds", a.list)
	mux.HandleFunc("GET /v1/folds/{fold}", a.status)
	mux.HandleFunc("GET /v1/folds/{fold}/keys", a.scan)
	mux.HandleFunc("GET /v1/folds/{fold}/keys/{key...}", a.get)
	mux.HandleFunc("GET /v1/folds/{fold}/verify", a.verify)
	mux.HandleFunc("POST /v1/folds/{fold}/reconcile", a.reconcile)
	mux.HandleFunc("GET /v1/folds/{fold}/artifact", a.artifact)
	if a.publish != nil {
		mux.HandleFunc("POST /v1/folds/{fold}/artifact", a.publishArtifact)
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

type api struct {
	folds    map[string]*fold.Fold
	order    []*fold.Fold
	producer string
	tempDir  string
	publish  func(ctx context.Context, fold, to string, replicas int) (objstore.Pointer, error)
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) { writeJSON(w, code, Error{Error: msg}) }

func (a *api) fold(w http.ResponseWriter, r *http.Request) (*fold.Fold, bool) {
	f, ok := a.folds[r.PathValue("fold")]
	if !ok {
		fail(w, http.StatusNotFound, "no fold named "+strconv.Quote(r.PathValue("fold")))
	}
	return f, ok
}

func statusCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 5*time.Second)
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := statusCtx(r)
	defer cancel()
	out := make([]fold.Status, 0, len(a.order))
	for _, f := range a.order {
		out = append(out, f.Status(ctx))
	}
	writeJSON(w, http.StatusOK, map[string]any{"folds": out})
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	ctx, cancel := statusCtx(r)
	defer cancel()
	writeJSON(w, http.StatusOK, f.Status(ctx))
}

func (a *api) ready(w http.ResponseWriter, _ *http.Request) {
	var waiting []string
	for _, f := range a.order {
		if !f.Ready() {
			waiting = append(waiting, f.Name())
		}
	}
	if len(waiting) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "waiting": waiting})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// readError maps a read failure to a status code.
func readError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, fold.ErrNotReady), errors.Is(err, fold.ErrStoreUnavailable):
		// Passing: the fold is bootstrapping or restarting its plugin.
		w.Header().Set("Retry-After", "1")
		fail(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, sdk.ErrNotFound):
		fail(w, http.StatusNotFound, "key not found")
	default:
		fail(w, http.StatusBadGateway, "store: "+err.Error())
	}
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	e, err := f.Get(r.Context(), []byte(r.PathValue("key")))
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

// Entry is one key of a scan page. Value holds UTF-8 values as text;
// other values come base64-encoded in ValueBase64.
type Entry struct {
	Key         string  `json:"key"`
	Revision    uint64  `json:"revision"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 []byte  `json:"value_base64,omitempty"`
}

// Page is one page of a scan. Next, when set, is the after= of the next page.
type Page struct {
	Entries []Entry `json:"entries"`
	Next    string  `json:"next,omitempty"`
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
	page := Page{Entries: []Entry{}}
	err = f.Scan(r.Context(), rng, func(e sdk.Entry) error {
		if len(page.Entries) == limit {
			page.Next = page.Entries[limit-1].Key
			return nil
		}
		out := Entry{Key: string(e.Key), Revision: e.Revision}
		if utf8.Valid(e.Value) {
			v := string(e.Value)
			out.Value = &v
		} else {
			out.ValueBase64 = e.Value
		}
		page.Entries = append(page.Entries, out)
		return nil
	})
	if err != nil {
		readError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// Verification is the answer of GET /v1/folds/{fold}/verify.
type Verification struct {
	Diverged    bool                   `json:"diverged"`
	Summary     reconcile.Summary      `json:"summary"`
	Differences []reconcile.Difference `json:"differences"`
}

func (a *api) verify(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	sum, diffs, err := f.Verify(r.Context())
	if err != nil {
		readError(w, err)
		return
	}
	if diffs == nil {
		diffs = []reconcile.Difference{}
	}
	writeJSON(w, http.StatusOK, Verification{Diverged: sum.Diverged(), Summary: sum, Differences: diffs})
}

func (a *api) reconcile(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	f.RequestReconcile()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "reconcile requested"})
}
