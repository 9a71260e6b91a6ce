package api

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/slipstreamkv/slipstream/host/fold"
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
