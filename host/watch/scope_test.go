package watch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// TestFirstInScope: the direct read behind a bookmark finds the first
// message of the watch's scope from a sequence on, past messages out of
// scope, with and without key filters, and nothing past the last.
func TestFirstInScope(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "b", History: 8})
	ctx := context.Background()
	seq := map[string]uint64{}
	for _, k := range []string{"a.1", "x.1", "x.2", "b.1", "x.3"} {
		rev, err := kv.Put(ctx, k, []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		seq[k] = rev
	}
	for _, c := range []struct {
		filters []string
		from    uint64
		want    uint64
	}{
		{nil, 1, seq["a.1"]},
		{nil, seq["x.2"], seq["x.2"]},
		{nil, seq["x.3"] + 1, 0},
		{[]string{"a.>", "b.>"}, 1, seq["a.1"]},
		{[]string{"a.>", "b.>"}, seq["a.1"] + 1, seq["b.1"]},
		{[]string{"b.>", "a.>"}, seq["a.1"] + 1, seq["b.1"]},
		{[]string{"a.>", "b.>"}, seq["b.1"] + 1, 0},
		{[]string{"x.2"}, 1, seq["x.2"]},
	} {
		w, err := Start(ctx, js, Config{Bucket: "b", Filters: c.filters})
		if err != nil {
			t.Fatal(err)
		}
		got, err := w.firstInScope(ctx, c.from)
		w.Stop()
		if err != nil || got != c.want {
			t.Errorf("filters %v, from %d: first in scope %d (%v), want %d", c.filters, c.from, got, err, c.want)
		}
	}
}

// TestBookmarkNeverPassesWhatIsToCome: writers put every key twice, so that
// the second put removes the first (History 1), in bursts, while the watch
// reads and checks as fast as it can; no update may arrive at or below a bookmark
// Check has returned. Checking consumer info before the stream read let
// one through within seconds: a message removed between the two was
// already in the client's buffer.
func TestBookmarkNeverPassesWhatIsToCome(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "b", History: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rev, err := kv.Put(ctx, "anchor", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := Start(ctx, js, Config{Bucket: "b", Cursor: rev})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	wctx, stop := context.WithCancel(ctx)
	var writers sync.WaitGroup
	for g := range 4 {
		writers.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				k := fmt.Sprintf("k%d.%d", g, i%3)
				_, _ = kv.Put(wctx, k, []byte("v"))
				_, _ = kv.Put(wctx, k, []byte("w"))
				if i%20 == 19 { // a pause, in which the reader catches up
					time.Sleep(time.Duration(1+g) * time.Millisecond)
				}
			}
		})
	}
	defer writers.Wait()
	defer stop()
	var bookmark uint64
	checks, past := 0, 0
	// Three seconds at least, and until some bookmarks ran ahead of the
	// updates, for thirty at most. Under the race detector the reader seldom
	// catches up with the writers: the run without it (make unit) is the one
	// that must see such bookmarks.
	want := 5
	if raceDetector {
		want = 0
	}
	start := time.Now()
	for time.Since(start) < 3*time.Second || (past < want && time.Since(start) < 30*time.Second) {
		u, err := w.Next(ctx, time.Millisecond)
		switch {
		case err == nil:
			if u.Revision <= bookmark {
				t.Fatalf("update at revision %d arrived after bookmark %d (%d checks)", u.Revision, bookmark, checks)
			}
			continue
		case !errors.Is(err, ErrNoUpdate):
			t.Fatal(err)
		}
		b, err := w.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checks++
		if b > w.delivered {
			past++
		}
		bookmark = max(bookmark, b)
	}
	// The test proves something only if bookmarks ran ahead of the updates.
	if past < want {
		t.Fatalf("%d bookmarks above the last update in %d checks; want %d", past, checks, want)
	}
	t.Logf("%d checks, %d bookmarks above the last update", checks, past)
}

// TestAPIPrefix: the subjects of the stream reads follow nats.go's own,
// with a domain or a custom prefix.
func TestAPIPrefix(t *testing.T) {
	srv := testenv.NATS(t)
	nc, _ := testenv.JetStream(t, srv.ClientURL())
	for _, c := range []struct {
		make func() (jetstream.JetStream, error)
		want string
	}{
		{func() (jetstream.JetStream, error) { return jetstream.New(nc) }, "$JS.API."},
		{func() (jetstream.JetStream, error) { return jetstream.NewWithDomain(nc, "hub") }, "$JS.hub.API."},
		{func() (jetstream.JetStream, error) { return jetstream.NewWithAPIPrefix(nc, "imported.JS") }, "imported.JS."},
		{func() (jetstream.JetStream, error) { return jetstream.NewWithAPIPrefix(nc, "imported.JS.") }, "imported.JS."},
	} {
		js, err := c.make()
		if err != nil {
			t.Fatal(err)
		}
		if got := apiPrefix(js.Options()); got != c.want {
			t.Errorf("apiPrefix(%+v) = %q, want %q", js.Options(), got, c.want)
		}
	}
}

// TestNoBookmarkWithoutTheStreamRead: when the stream read fails, Check
// says why and bookmarks nothing past what was delivered; once the read
// works again, so do bookmarks.
func TestNoBookmarkWithoutTheStreamRead(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "b"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range []string{"a.1", "x.1", "x.2"} {
		if _, err := kv.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	w, err := Start(ctx, js, Config{Bucket: "b", Filters: []string{"a.>"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if u, err := w.Next(ctx, 5*time.Second); err != nil || string(u.Key) != "a.1" {
		t.Fatalf("Next = %+v, %v; want a.1", u, err)
	}
	stream := w.Identity.Stream
	w.Identity.Stream = "KV_nothere" // the read goes to a stream that is not there
	b, err := w.Check(ctx)
	if err != nil || b != 1 || w.BookmarkError() == nil {
		t.Fatalf("Check with the read failing = %d, %v, bookmark error %v; want 1, no error, and the read's error", b, err, w.BookmarkError())
	}
	w.Identity.Stream = "KV_nothere"
	if _, err := w.Check(ctx); err != nil || w.BookmarkError() == nil {
		t.Fatalf("Check with the read failing again = %v, bookmark error %v", err, w.BookmarkError())
	}
	w.Identity.Stream = stream
	if b, err = w.Check(ctx); err != nil || b != 3 || w.BookmarkError() != nil {
		t.Fatalf("Check with the read working = %d, %v, bookmark error %v; want 3", b, err, w.BookmarkError())
	}
	// With nothing past the frontier there is nothing to read: the error
	// of an earlier read does not linger.
	w.readErr = errors.New("an earlier read's")
	if _, err := w.Check(ctx); err != nil || w.BookmarkError() != nil {
		t.Fatalf("Check with nothing to read = %v, bookmark error %v; want none", err, w.BookmarkError())
	}
}
