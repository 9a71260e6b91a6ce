package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Bounds of ?bookmark=, the longest a watch stays silent.
const (
	defaultBookmark = 10 * time.Second
	minBookmark     = 100 * time.Millisecond
	maxBookmark     = 10 * time.Minute
)

// writeTimeout bounds one write to a watcher: a client that reads nothing
// for that long is dropped.
const writeTimeout = 30 * time.Second

// Bookmark is the data of a bookmark event: every change under the prefix
// up to Cursor has been sent.
type Bookmark struct {
	Generation int    `json:"generation"`
	Cursor     uint64 `json:"cursor"`
}

// Reset is the data of a reset event, the last of its stream: the changes
// after the subscriber's position cannot be sent. Read the fold again
// (Generation and Cursor are where it is now) and watch from that read.
type Reset struct {
	Reason     string `json:"reason"`
	Generation int    `json:"generation,omitempty"`
	Cursor     uint64 `json:"cursor,omitempty"`
}

// ParsePosition reads a watch position, GENERATION.CURSOR, as event ids
// carry it.
func ParsePosition(s string) (fold.Position, error) {
	g, c, ok := strings.Cut(s, ".")
	gen, err1 := strconv.Atoi(g)
	cursor, err2 := strconv.ParseUint(c, 10, 64)
	if !ok || err1 != nil || err2 != nil || gen < 1 {
		return fold.Position{}, fmt.Errorf("position %q: want GENERATION.CURSOR, such as 3.1042 (the Slipstream-Generation and Slipstream-Cursor of a read, or an event id)", s)
	}
	return fold.Position{Generation: gen, Cursor: cursor}, nil
}

// watch streams the fold's changes as server-sent events: put and delete
// events with id GENERATION.REVISION, bookmark events with id
// GENERATION.CURSOR while the prefix is quiet (and one at the start), and a
// last reset event when the stream cannot go on without a gap. It resumes
// after the position in Last-Event-ID or ?from=; without either it starts
// at the fold's current position.
func (a *api) watch(w http.ResponseWriter, r *http.Request) {
	f, ok := a.fold(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	bookmark := defaultBookmark
	if s := q.Get("bookmark"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < minBookmark || d > maxBookmark {
			fail(w, http.StatusBadRequest, fmt.Sprintf("bookmark must be a duration from %s to %s, got %q", minBookmark, maxBookmark, s))
			return
		}
		bookmark = d
	}
	var from fold.Position
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = q.Get("from")
	}
	if raw != "" {
		var err error
		if from, err = ParsePosition(raw); err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	changes, err := f.Watch(from, []byte(q.Get("prefix")))
	if err != nil && !errors.Is(err, fold.ErrReset) {
		readError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	if err != nil {
		s.reset(f, err)
		return
	}
	defer changes.Close()
	ctx := r.Context()
	if a.stopping != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(a.stopping, cancel)()
	}
	at := changes.Position()
	s.event("bookmark", at.String(), Bookmark{Generation: at.Generation, Cursor: at.Cursor})
	s.flush() // the headers and where the stream starts, at once
	for s.err == nil {
		cs, at, err := changes.Next(ctx, bookmark)
		switch {
		case errors.Is(err, fold.ErrReset):
			s.reset(f, err)
			return
		case err != nil:
			return // the client went away
		case len(cs) == 0:
			s.event("bookmark", at.String(), Bookmark{Generation: at.Generation, Cursor: at.Cursor})
		}
		for _, c := range cs {
			id := fold.Position{Generation: at.Generation, Cursor: c.Revision}.String()
			if c.Op == sdk.OpDelete {
				s.event("delete", id, Entry{Key: string(c.Key), Revision: c.Revision})
			} else {
				s.event("put", id, entryOf(string(c.Key), c.Value, c.Revision))
			}
		}
		s.flush()
	}
}

// sse writes events, each write bounded by writeTimeout; the first error
// ends the stream.
type sse struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
	err error
}

func (s *sse) event(name, id string, data any) {
	b, err := json.Marshal(data)
	if err != nil {
		s.err = err
		return
	}
	s.buf = append(s.buf, "event: "...)
	s.buf = append(s.buf, name...)
	if id != "" {
		s.buf = append(s.buf, "\nid: "...)
		s.buf = append(s.buf, id...)
	}
	s.buf = append(s.buf, "\ndata: "...)
	s.buf = append(s.buf, b...)
	s.buf = append(s.buf, "\n\n"...)
}

func (s *sse) flush() {
	if s.err != nil || len(s.buf) == 0 {
		return
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, s.err = s.w.Write(s.buf); s.err == nil {
		s.err = s.rc.Flush()
	}
	s.buf = s.buf[:0]
}

// reset sends the last event of a stream that cannot go on, with where the
// fold is now.
func (s *sse) reset(f *fold.Fold, why error) {
	at, _ := f.Position()
	s.event("reset", "", Reset{Reason: strings.TrimPrefix(why.Error(), fold.ErrReset.Error()+": "), Generation: at.Generation, Cursor: at.Cursor})
	s.flush()
}
