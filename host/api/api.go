// Package api serves the local HTTP API: fold status, key reads, scans,
// readiness and metrics. It reads folds; it never changes them.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/objstore"
	"github.com/slipstreamkv/slipstream/host/reconcile"
	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/valyala/fasthttp"
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
	// Reload, when set, serves POST /v1/reload: the service reads its
	// config file again and applies it; the answer is what changed.
	Reload func(ctx context.Context) (any, error)
	// Stopping, when set, ends every change stream when it is done: a
	// server shutting down waits for its requests, and a stream would
	// otherwise never end. Its clients resume from their last event.
	Stopping context.Context
}

// Routes are the API as two servers serve it (host/front serves them
// on one port): HTTP answers every request of the API; Read answers the
// plain key reads alone, GET /v1/folds/{fold}/keys/{key} without a query,
// on a fasthttp server, with the same answers as HTTP, and reports false,
// having written nothing, for any other request.
type Routes struct {
	HTTP http.Handler
	Read func(*fasthttp.RequestCtx) bool
}

// Handler returns the API over folds, with /metrics from g.
func Handler(folds []*fold.Fold, g prometheus.Gatherer, o Options) http.Handler {
	return New(folds, g, o).HTTP
}

// New returns the API over folds, with /metrics from g, in its two halves.
func New(folds []*fold.Fold, g prometheus.Gatherer, o Options) Routes {
	a := &api{folds: map[string]*fold.Fold{}, order: folds, producer: o.Producer, tempDir: o.TempDir, publish: o.Publish, stopping: o.Stopping, reload: o.Reload}
	for _, f := range folds {
		a.folds[f.Name()] = f
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/folds", a.list)
	mux.HandleFunc("GET /v1/folds/{fold}", a.status)
	mux.HandleFunc("GET /v1/folds/{fold}/keys", a.scan)
	mux.HandleFunc("GET /v1/folds/{fold}/keys/{key...}", a.get)
	mux.HandleFunc("POST /v1/folds/{fold}/keys:batchGet", a.batchGet)
	mux.HandleFunc("GET /v1/folds/{fold}/watch", a.watch)
	mux.HandleFunc("GET /v1/folds/{fold}/verify", a.verify)
	mux.HandleFunc("POST /v1/folds/{fold}/reconcile", a.reconcile)
	mux.HandleFunc("GET /v1/folds/{fold}/artifact", a.artifact)
	if a.publish != nil {
		mux.HandleFunc("POST /v1/folds/{fold}/artifact", a.publishArtifact)
	}
	if a.reload != nil {
		mux.HandleFunc("POST /v1/reload", a.reloadConfig)
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return Routes{HTTP: mux, Read: a.fastRead}
}

type api struct {
	folds    map[string]*fold.Fold
	order    []*fold.Fold
	producer string
	tempDir  string
	publish  func(ctx context.Context, fold, to string, replicas int) (objstore.Pointer, error)
	stopping context.Context
	reload   func(ctx context.Context) (any, error)
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(jsonBody(v))
}

// jsonBody is v as every answer of the API writes it: indented, with a
// final newline.
func jsonBody(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the API's answers are types that encode
	return b.Bytes()
}

func fail(w http.ResponseWriter, code int, msg string) { writeJSON(w, code, Error{Error: msg}) }

func (a *api) fold(w http.ResponseWriter, r *http.Request) (*fold.Fold, bool) {
	f, ok := a.folds[r.PathValue("fold")]
	if !ok {
		fail(w, http.StatusNotFound, noFold(r.PathValue("fold")))
	}
	return f, ok
}

// noFold is the message of a 404 for a fold the API does not have.
func noFold(name string) string { return "no fold named " + strconv.Quote(name) }

func statusCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 5*time.Second)
}

// list answers the status of every fold. Each is asked at once, with a
// bound of its own: a fold whose store does not answer delays the list by
// that bound, not the folds after it, whose key counts it would have left
// at 0.
func (a *api) list(w http.ResponseWriter, r *http.Request) {
	out := make([]fold.Status, len(a.order))
	var wg sync.WaitGroup
	for i, f := range a.order {
		wg.Go(func() {
			ctx, cancel := statusCtx(r)
			defer cancel()
			out[i] = f.Status(ctx)
		})
	}
	wg.Wait()
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

// readError answers a read that failed (readFailure).
func readError(w http.ResponseWriter, err error) {
	code, msg, passing := readFailure(err)
	if passing {
		w.Header().Set("Retry-After", "1")
	}
	fail(w, code, msg)
}

// readFailure maps a read's error to its status code and message; passing
// is set when the client should retry (with Retry-After: 1).
func readFailure(err error) (code int, msg string, passing bool) {
	switch {
	case errors.Is(err, fold.ErrNotReady), errors.Is(err, fold.ErrStoreUnavailable):
		// Passing: the fold is bootstrapping or restarting its plugin.
		return http.StatusServiceUnavailable, err.Error(), true
	case errors.Is(err, sdk.ErrNotFound):
		return http.StatusNotFound, "key not found", false
	default:
		return http.StatusBadGateway, "store: " + err.Error(), false
	}
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

// reloadConfig has the service read its config file again and apply it.
// A config that does not load, or a fold that does not start, is 422 with
// the errors (and what was applied); the running config goes on.
func (a *api) reloadConfig(w http.ResponseWriter, r *http.Request) {
	res, err := a.reload(r.Context())
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "result": res})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *api) reconcile(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	f.RequestReconcile()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "reconcile requested"})
}
