package api

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/objstore"
)

// artifact exports the fold's published generation and sends it. The
// export is written to a temporary file first: the fold's applies pause
// while its store is read, and must not wait on a slow client. A client
// that receives fewer bytes than Content-Length, or an artifact without its
// end frame, has an incomplete artifact, which an import refuses.
func (a *api) artifact(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	tmp, err := os.CreateTemp(a.tempDir, "slipstream-export-*.slipsnap")
	if err != nil {
		fail(w, http.StatusInternalServerError, "export: "+err.Error())
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	m, err := f.Export(r.Context(), tmp, a.producer)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, fold.ErrNotReady) || errors.Is(err, fold.ErrStoreUnavailable) {
			w.Header().Set("Retry-After", "1")
			code = http.StatusServiceUnavailable
		}
		fail(w, code, "export: "+err.Error())
		return
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		fail(w, http.StatusInternalServerError, "export: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", ArtifactType)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set(CursorHeader, strconv.FormatUint(m.Cursor, 10))
	w.Header().Set(ContentHashHeader, m.ContentHash)
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, tmp)
}

// publishArtifact exports the fold and publishes the artifact to the
// Object Store series of the query's to (nats-object://BUCKET/NAME),
// creating its buckets with the query's replicas (default 1) when they are
// missing. It answers the pointer it published: 200. An export the series'
// pointer has already passed is refused with 409 and both pointers.
func (a *api) publishArtifact(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	to := q.Get("to")
	if _, err := objstore.ParseURL(to); err != nil {
		fail(w, http.StatusBadRequest, "to: "+err.Error())
		return
	}
	replicas := 1
	if v := q.Get("replicas"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			fail(w, http.StatusBadRequest, "replicas: want 1 to 5, got "+strconv.Quote(v))
			return
		}
		replicas = n
	}
	p, err := a.publish(r.Context(), f.Name(), to, replicas)
	var sup *objstore.SupersededError
	switch {
	case errors.As(err, &sup):
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "current": sup.Current, "attempted": sup.Attempted})
	case errors.Is(err, fold.ErrNotReady) || errors.Is(err, fold.ErrStoreUnavailable):
		w.Header().Set("Retry-After", "1")
		fail(w, http.StatusServiceUnavailable, "export: "+err.Error())
	case err != nil:
		fail(w, http.StatusInternalServerError, "publish: "+err.Error())
	default:
		writeJSON(w, http.StatusOK, p)
	}
}
