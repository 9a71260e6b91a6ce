package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// EventType is what an Event says.
type EventType int

// The events of a Watch.
const (
	// EventPut: Key now holds Value, since the write of Revision.
	EventPut EventType = iota + 1
	// EventDelete: Key was deleted (or purged) by the write of Revision.
	EventDelete
	// EventBookmark: every change under the prefix up to Position has been
	// delivered. One comes first, and then one whenever the prefix is
	// quiet for the bookmark interval; a position to resume from.
	EventBookmark
	// EventReset: the changes after the watch's position cannot be
	// delivered (Reason says why). It is the last event of its Watch: read
	// the fold again and watch from the position of that read. Position is
	// where the fold was when the service said so.
	EventReset
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventBookmark:
		return "bookmark"
	case EventReset:
		return "reset"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one event of a Watch.
type Event struct {
	Type EventType
	// Key, Value (puts only) and Revision of a put or a delete.
	Key      string
	Value    []byte
	Revision uint64
	// Position: for a put or a delete, the fold's generation and the
	// change's revision; for a bookmark, the position delivered up to; for
	// a reset, where the fold was. Give the position of the last put,
	// delete or bookmark handled to WatchOptions.From to go on later.
	Position Position
	// Reason says why, for a reset.
	Reason string
}

// WatchOptions are the settings of a Watch.
type WatchOptions struct {
	// Prefix limits the changes to the keys that start with it.
	Prefix string
	// From is the position to follow from: the changes committed after it
	// are delivered. The zero Position is the fold's position when the
	// watch starts (read with one small scan of Prefix).
	From Position
	// Bookmark is the longest the stream stays silent: after that long
	// without a change under the prefix the service sends a bookmark
	// (100ms to 10m; 0 is the service's default, 10s). A stream silent for
	// twice as long and 5s more is taken for dead, cut and resumed.
	Bookmark time.Duration
	// MaxBackoff bounds the wait between two attempts to resume (default
	// 5s). The wait starts at 100ms and doubles, with jitter; a 503's
	// Retry-After is honoured up to MaxBackoff.
	MaxBackoff time.Duration
	// OnRetry, when set, is called before each wait to resume, with the
	// error that ended the last attempt: a dropped connection, a service
	// not ready or restarting. Watch retries those until its context ends.
	OnRetry func(err error, wait time.Duration)
}

// Watch follows the changes of fold under o.Prefix after o.From, in commit
// order, each once. The iterator yields puts, deletes and bookmarks.
//
// A dropped connection, a stream that falls silent, or a service that
// answers 5xx for a while is not the caller's concern: Watch resumes from
// the last event it received (its id, as Last-Event-ID), waiting between
// attempts (WatchOptions.MaxBackoff), so that no change is delivered twice
// or skipped.
//
// The iteration ends
//   - after an EventReset, the last event: the changes after the position
//     cannot be delivered; read the fold again and watch from that read
//     (or let Sync do it);
//   - with the context's error, yielded, once ctx ends;
//   - with an error that retrying cannot mend, yielded: an unknown fold
//     (ErrNoFold), a refused token (ErrUnauthorized), a bad request, an
//     answer that is not an event stream.
func (c *Client) Watch(ctx context.Context, fold string, o WatchOptions) iter.Seq2[Event, error] {
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	return func(yield func(Event, error) bool) {
		w := &watcher{c: c, fold: fold, o: o, at: o.From, yield: yield}
		w.run(ctx)
	}
}

// minBackoff is the first wait before a resume.
const minBackoff = 100 * time.Millisecond

// duplicates counts changes a watcher dropped because their revision was
// not after what it had delivered (the service should send none); tests
// read it.
var duplicates atomic.Int64

// Errors between an attempt and run.
var (
	errStopped = errors.New("the caller stopped") // yield returned false
	errEnded   = errors.New("the stream reset")   // the reset was yielded
)

type watcher struct {
	c     *Client
	fold  string
	o     WatchOptions
	yield func(Event, error) bool

	at      Position // delivered up to: the id of the last event received
	yielded bool     // an event was yielded
}

func (w *watcher) run(ctx context.Context) {
	backoff := minBackoff
	for {
		progressed, err := w.attempt(ctx)
		switch {
		case errors.Is(err, errStopped), errors.Is(err, errEnded):
			return
		case ctx.Err() != nil:
			w.yield(Event{}, ctx.Err())
			return
		case permanent(err):
			w.yield(Event{}, err)
			return
		}
		if progressed {
			backoff = minBackoff
		}
		// Full jitter on the upper half: [backoff/2, backoff).
		wait := backoff/2 + rand.N(backoff/2+1)
		var e *Error
		if errors.As(err, &e) && e.RetryAfter > wait {
			wait = min(e.RetryAfter, w.o.MaxBackoff)
		}
		if w.o.OnRetry != nil {
			w.o.OnRetry(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			w.yield(Event{}, ctx.Err())
			return
		case <-t.C:
		}
		backoff = min(2*backoff, w.o.MaxBackoff)
	}
}

// permanent reports whether err is an answer that a retry would get again.
func permanent(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests:
			return false
		}
		return e.StatusCode >= 400 && e.StatusCode < 500
	}
	var p *protocolError
	return errors.As(err, &p)
}

// protocolError is an answer that is not the event stream the client
// speaks.
type protocolError struct{ msg string }

func (p *protocolError) Error() string { return "slipstream: watch: " + p.msg }

// attempt makes one connection and delivers its events. progressed
// reports whether it received any.
func (w *watcher) attempt(ctx context.Context) (progressed bool, err error) {
	if w.at.IsZero() {
		// Take the position now, so that a resume before the first event
		// still starts here.
		q := url.Values{"prefix": {w.o.Prefix}, "limit": {"1"}}
		resp, err := w.c.do(ctx, http.MethodGet, foldPath(w.fold, "/keys"), q, nil, http.StatusOK, nil)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		at, ok := positionOf(resp.Header)
		if !ok {
			return false, &protocolError{"the scan of the start position answered no position headers"}
		}
		w.at = at
	}

	bookmark := w.o.Bookmark
	if bookmark <= 0 {
		bookmark = 10 * time.Second
	}
	idle := 2*bookmark + 5*time.Second
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var silent atomic.Bool
	watchdog := time.AfterFunc(idle, func() { silent.Store(true); cancel() })
	defer watchdog.Stop()
	silence := func(err error) error {
		if silent.Load() && ctx.Err() == nil {
			return fmt.Errorf("slipstream: watch: nothing received for %s: %w", idle, err)
		}
		return err
	}

	q := url.Values{}
	if w.o.Prefix != "" {
		q.Set("prefix", w.o.Prefix)
	}
	if w.o.Bookmark > 0 {
		q.Set("bookmark", w.o.Bookmark.String())
	}
	h := http.Header{"Last-Event-Id": {w.at.String()}, "Accept": {"text/event-stream"}}
	resp, err := w.c.do(connCtx, http.MethodGet, foldPath(w.fold, "/watch"), q, nil, http.StatusOK, h)
	if err != nil {
		return false, silence(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		return false, &protocolError{fmt.Sprintf("the answer is %q, not text/event-stream", ct)}
	}

	r := bufio.NewReaderSize(resp.Body, 64<<10)
	var ev sseEvent
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a stream ends with a reset, or not at all
			}
			return progressed, silence(fmt.Errorf("slipstream: watch: reading the stream: %w", err))
		}
		watchdog.Reset(idle)
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) > 0 {
			ev.field(line)
			continue
		}
		if ev.empty() {
			continue
		}
		progressed = true
		err = w.dispatch(&ev)
		ev = sseEvent{}
		if err != nil {
			return progressed, err
		}
	}
}

// sseEvent collects the fields of one server-sent event.
type sseEvent struct {
	name, id string
	data     []byte
	hasData  bool
}

func (e *sseEvent) empty() bool { return e.name == "" && e.id == "" && !e.hasData }

// field takes in one line of an event (text/event-stream's rules: a
// colon, then one optional space; a line starting with a colon is a
// comment).
func (e *sseEvent) field(line []byte) {
	name, value, _ := bytes.Cut(line, []byte(":"))
	value = bytes.TrimPrefix(value, []byte(" "))
	switch string(name) {
	case "": // a comment
	case "event":
		e.name = string(value)
	case "id":
		e.id = string(value)
	case "data":
		if e.hasData {
			e.data = append(e.data, '\n')
		}
		e.data, e.hasData = append(e.data, value...), true
	}
}

// dispatch handles one event: it yields what the caller should see and
// moves the watcher's position.
func (w *watcher) dispatch(ev *sseEvent) error {
	switch ev.name {
	case "put", "delete":
		at, err := ParsePosition(ev.id)
		if err != nil {
			return &protocolError{fmt.Sprintf("%s event: id: %v", ev.name, err)}
		}
		var d wireEntry
		if err := json.Unmarshal(ev.data, &d); err != nil {
			return &protocolError{fmt.Sprintf("%s event %s: %v", ev.name, ev.id, err)}
		}
		if at.Generation == w.at.Generation && at.Cursor <= w.at.Cursor {
			duplicates.Add(1) // delivered already
			return nil
		}
		w.at = at
		out := Event{Type: EventPut, Key: d.Key, Revision: d.Revision, Position: at}
		if ev.name == "delete" {
			out.Type = EventDelete
		} else {
			out.Value = d.entry().Value
		}
		return w.emit(out)
	case "bookmark":
		at, err := ParsePosition(ev.id)
		if err != nil {
			return &protocolError{fmt.Sprintf("bookmark event: id: %v", err)}
		}
		// A resumed stream starts with a bookmark at its position: news
		// only for the first stream.
		if w.yielded && at.Generation == w.at.Generation && at.Cursor <= w.at.Cursor {
			return nil
		}
		if at.Generation != w.at.Generation || at.Cursor > w.at.Cursor {
			w.at = at
		}
		return w.emit(Event{Type: EventBookmark, Position: at})
	case "reset":
		var d struct {
			Reason     string `json:"reason"`
			Generation int    `json:"generation"`
			Cursor     uint64 `json:"cursor"`
		}
		if err := json.Unmarshal(ev.data, &d); err != nil {
			return &protocolError{fmt.Sprintf("reset event: %v", err)}
		}
		if err := w.emit(Event{Type: EventReset, Reason: d.Reason, Position: Position{Generation: d.Generation, Cursor: d.Cursor}}); err != nil {
			return err
		}
		return errEnded
	}
	return nil // an event this client does not know
}

func (w *watcher) emit(ev Event) error {
	w.yielded = true
	if !w.yield(ev, nil) {
		return errStopped
	}
	return nil
}
