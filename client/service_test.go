package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/client"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/service"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// env is a real service with one SQLite fold "f" of the bucket "cfg" and
// its API on a loopback port.
type env struct {
	t   *testing.T
	kv  jetstream.KeyValue
	js  jetstream.JetStream
	svc *service.Service
	api string // host:port
}

const serviceTOML = `
data_dir = "data"
plugin_dir = "PLUGIN_DIR"
[nats]
url = "NATS_URL"
[http]
listen = "127.0.0.1:0"
[[fold]]
name = "f"
bucket = "cfg"
store = "sqlite"
`

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	// History 64: with 1, NATS removes a key's value as soon as the next one
	// is written, so a value overwritten before the fold read it is seen by
	// nobody (the fold, or a raw watcher, gets the newer one) and no watch
	// could deliver every revision the tests write.
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg", History: 64})
	// A key never rewritten holds the stream's first sequence at 1: the
	// fold's expiry guard then never sees retention pass its cursor when
	// the tests rewrite keys faster than it checks.
	if _, err := kv.Put(context.Background(), "seed", []byte("seed")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plugin := testenv.SQLitePlugin(t)
	toml := strings.NewReplacer("NATS_URL", srv.ClientURL(), "PLUGIN_DIR", filepath.Dir(plugin)).Replace(serviceTOML)
	path := filepath.Join(dir, "slipstream.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("SLIPSTREAM_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := service.Start(ctx, cfg, logger, service.Options{CheckEvery: 50 * time.Millisecond})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service: %v", err)
		}
	})
	e := &env{t: t, kv: kv, js: js, svc: svc, api: svc.HTTPAddr()}
	c := e.client()
	testenv.Eventually(t, 60*time.Second, "fold f ready", func() bool {
		st, err := c.Status(context.Background(), "f")
		return err == nil && st.Ready
	})
	return e
}

func (e *env) client(opts ...client.Option) *client.Client {
	e.t.Helper()
	c, err := client.New(e.api, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) put(key string, value []byte) uint64 {
	e.t.Helper()
	rev, err := e.kv.Put(context.Background(), key, value)
	if err != nil {
		e.t.Fatal(err)
	}
	return rev
}

// del deletes key as the KV API does, and returns the revision of the
// delete marker (kv.Delete does not tell it).
func (e *env) del(ctx context.Context, key string) (uint64, error) {
	msg := nats.NewMsg("$KV.cfg." + key)
	msg.Header.Set("KV-Operation", "DEL")
	ack, err := e.js.PublishMsg(ctx, msg)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestReads: Get, BatchGet, Scan, Status and Folds of known data, and the
// errors of absent keys and folds.
func TestReads(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	c := e.client()
	binary := []byte{0xff, 0x00, 0xfe, 'x'}
	want := map[string][]byte{
		"k.a": []byte("alpha"), "k.b": binary, "k.c": {}, "k.d": []byte("delta\nline"), "k.e": []byte("é"),
		"other": []byte("outside the prefix"),
	}
	revs := map[string]uint64{}
	var last uint64
	for _, k := range []string{"k.a", "k.b", "k.c", "k.d", "k.e", "other"} {
		last = e.put(k, want[k])
		revs[k] = last
	}

	got, at, err := c.Get(ctx, "f", "k.b", client.MinCursor(last, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != string(binary) || got.Revision != revs["k.b"] || got.Key != "k.b" {
		t.Errorf("Get k.b = %+v, want %q at revision %d", got, binary, revs["k.b"])
	}
	if at.Generation != 1 || at.Cursor < last {
		t.Errorf("Get's position %v, want generation 1 at cursor %d or later", at, last)
	}
	if got, _, err := c.Get(ctx, "f", "k.c"); err != nil || got.Value == nil || len(got.Value) != 0 {
		t.Errorf("Get of an empty value = %+v, %v; want an empty, non-nil value", got, err)
	}

	_, at, err = c.Get(ctx, "f", "k.nope")
	var apiErr *client.Error
	if !errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrNoFold) || !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Errorf("Get of an absent key: %v, want ErrNotFound (a 404)", err)
	}
	if at.Generation != 1 || at.Cursor < last {
		t.Errorf("Get of an absent key: position %v, want generation 1 at %d or later", at, last)
	}
	if _, _, err := c.Get(ctx, "nofold", "k.a"); !errors.Is(err, client.ErrNoFold) || errors.Is(err, client.ErrNotFound) || !strings.Contains(err.Error(), `no fold named "nofold"`) {
		t.Errorf("Get of an unknown fold: %v, want ErrNoFold with the server's message", err)
	}

	items, at, err := c.BatchGet(ctx, "f", []string{"k.e", "k.nope", "k.b", "k.a"})
	if err != nil {
		t.Fatal(err)
	}
	if at.Generation != 1 || at.Cursor < last {
		t.Errorf("BatchGet's position %v", at)
	}
	wantItems := []struct {
		key   string
		found bool
	}{{"k.e", true}, {"k.nope", false}, {"k.b", true}, {"k.a", true}}
	if len(items) != len(wantItems) {
		t.Fatalf("BatchGet: %d items, want %d", len(items), len(wantItems))
	}
	for i, w := range wantItems {
		it := items[i]
		if it.Key != w.key || it.Found != w.found {
			t.Errorf("BatchGet item %d = %+v, want key %s found %t", i, it, w.key, w.found)
			continue
		}
		if w.found && (string(it.Value) != string(want[w.key]) || it.Revision != revs[w.key]) {
			t.Errorf("BatchGet %s = %q rev %d, want %q rev %d", w.key, it.Value, it.Revision, want[w.key], revs[w.key])
		}
	}
	if _, _, err := c.BatchGet(ctx, "f", nil); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("BatchGet of no keys: %v, want the server's 400", err)
	}

	// Pages of two keys: k.a k.b | k.c k.d | k.e.
	var keys []string
	var first client.Position
	for en, err := range c.Scan(ctx, "f", "k.", client.PageSize(2), client.ScanPosition(&first)) {
		if err != nil {
			t.Fatal(err)
		}
		if string(en.Value) != string(want[en.Key]) || en.Revision != revs[en.Key] {
			t.Errorf("Scan: %s = %q rev %d, want %q rev %d", en.Key, en.Value, en.Revision, want[en.Key], revs[en.Key])
		}
		keys = append(keys, en.Key)
	}
	if fmt.Sprint(keys) != "[k.a k.b k.c k.d k.e]" {
		t.Errorf("Scan keys %v", keys)
	}
	if first.Generation != 1 || first.Cursor < last {
		t.Errorf("Scan position %v", first)
	}
	keys = nil
	for en, err := range c.Scan(ctx, "f", "k.", client.StartAfter("k.b"), client.PageSize(1)) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, en.Key)
		if len(keys) == 2 {
			break // stopping early is allowed
		}
	}
	if fmt.Sprint(keys) != "[k.c k.d]" {
		t.Errorf("Scan after k.b, stopped after two: %v", keys)
	}
	for _, err := range c.Scan(ctx, "nofold", "") {
		if !errors.Is(err, client.ErrNoFold) {
			t.Errorf("Scan of an unknown fold: %v", err)
		}
	}

	st, err := c.Status(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "f" || st.Bucket != "cfg" || st.State != "synced" || !st.Ready || st.Keys != 7 || st.Generation != 1 || len(st.Raw) == 0 {
		t.Errorf("Status = %+v", st)
	}
	all, err := c.Folds(ctx)
	if err != nil || len(all) != 1 || all[0].Name != "f" {
		t.Errorf("Folds = %+v, %v", all, err)
	}
	if _, err := c.Status(ctx, "nofold"); !errors.Is(err, client.ErrNoFold) {
		t.Errorf("Status of an unknown fold: %v", err)
	}
}

// TestReadYourWrites: a read with MinCursor(revision of a write) sees the
// write, every time; one with a cursor never reached fails with
// ErrNotReached and where the fold was.
func TestReadYourWrites(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	c := e.client()
	for i := range 50 {
		v := fmt.Sprintf("v%d", i)
		rev := e.put("ryw", []byte(v))
		got, at, err := c.Get(ctx, "f", "ryw", client.MinCursor(rev, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Value) != v || got.Revision != rev || at.Cursor < rev {
			t.Fatalf("write %d (revision %d): read %q revision %d at %v", i, rev, got.Value, got.Revision, at)
		}
		rev = e.put(fmt.Sprintf("ryw.%d", i), []byte(v))
		items, _, err := c.BatchGet(ctx, "f", []string{fmt.Sprintf("ryw.%d", i)}, client.MinCursor(rev, 10*time.Second))
		if err != nil || !items[0].Found || string(items[0].Value) != v {
			t.Fatalf("BatchGet after write %d: %+v, %v", i, items, err)
		}
	}
	rev := e.put("ryw.last", []byte("last"))
	n := 0
	for en, err := range c.Scan(ctx, "f", "ryw.", client.MinCursor(rev, 10*time.Second)) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if en.Key == "ryw.last" && string(en.Value) != "last" {
			t.Errorf("Scan: ryw.last = %q", en.Value)
		}
	}
	if n != 51 {
		t.Errorf("Scan after the writes: %d keys, want 51", n)
	}

	_, _, err := c.Get(ctx, "f", "ryw", client.MinCursor(rev+1000, 100*time.Millisecond))
	var apiErr *client.Error
	if !errors.Is(err, client.ErrNotReached) || !errors.As(err, &apiErr) || apiErr.Position.Generation != 1 || apiErr.Position.Cursor < rev {
		t.Errorf("Get with a cursor not reached: %v (%+v), want ErrNotReached with the position at %d or later", err, apiErr, rev)
	}
}

// write is one change made under the watched prefix.
type write struct {
	op    client.EventType
	key   string
	value string
}

// cutter dials through a net.Dialer and can close the connection it made
// last, from the client's side, as a network failure would.
type cutter struct {
	conns chan net.Conn
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		select {
		case c.conns <- conn:
		default: // not cut
		}
	}
	return conn, err
}

// TestWatchResumesExactlyOnce: writes go on under the prefix and beside
// it while the watch's connection is cut over and over from the client's
// side; every change under the prefix arrives exactly once, in revision
// order, with its key, op and value.
func TestWatchResumesExactlyOnce(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 2*time.Minute)
	_, from, err := e.client().Get(ctx, "f", "nothing")
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatal(err)
	}

	cut := &cutter{conns: make(chan net.Conn, 1000)}
	tr := &http.Transport{DialContext: cut.dial, DisableKeepAlives: true}
	c := e.client(client.WithHTTPClient(&http.Client{Transport: tr}))

	// At least n writes, and more (up to 4n) until the cutter has cut at
	// least minCuts connections: a fast machine finishes n before that.
	const n, minCuts = 5000, 8
	var cutsSoFar atomic.Int64
	writes := map[uint64]write{}
	var lastRev uint64
	writerDone := make(chan struct{})
	var writeErr error
	go func() {
		defer close(writerDone)
		for i := 0; i < n || (cutsSoFar.Load() < minCuts && i < 4*n); i++ {
			key := fmt.Sprintf("w.%d", i%97)
			var rev uint64
			var err error
			switch {
			case i%7 == 3:
				_, err = e.kv.Put(ctx, fmt.Sprintf("x.%d", i), []byte("beside the prefix"))
			case i%11 == 5 && i > 97:
				if rev, err = e.del(ctx, key); err == nil {
					writes[rev] = write{client.EventDelete, key, ""}
				}
			default:
				v := fmt.Sprintf("value %d", i)
				if rev, err = e.kv.Put(ctx, key, []byte(v)); err == nil {
					writes[rev] = write{client.EventPut, key, v}
				}
			}
			if err != nil {
				writeErr = err
				return
			}
			lastRev = max(lastRev, rev)
		}
	}()

	// Cut each connection at a random point of its life: before the
	// answer, in the middle of an event, between events.
	stopCutting := make(chan struct{})
	cutterDone := make(chan int)
	go func() {
		cuts := 0
		defer func() { cutterDone <- cuts }()
		for {
			var conn net.Conn
			select {
			case conn = <-cut.conns:
			case <-stopCutting:
				return
			case <-writerDone:
				return // the end is then reached without cuts
			}
			select {
			case <-time.After(time.Duration(cuts%7) * 2 * time.Millisecond):
			case <-stopCutting:
				return
			}
			conn.Close()
			cuts++
			cutsSoFar.Add(1)
		}
	}()

	seen := map[uint64]int{}
	got := map[uint64]write{}
	var prev uint64
	retries := 0
	opts := client.WatchOptions{
		Prefix: "w.", From: from, Bookmark: 200 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnRetry: func(error, time.Duration) { retries++ },
	}
	dupsBefore := client.Duplicates()
	done := false
	for ev, err := range c.Watch(ctx, "f", opts) {
		if err != nil {
			t.Fatalf("watch: %v (after revision %d, %d retries)", err, prev, retries)
		}
		switch ev.Type {
		case client.EventReset:
			t.Fatalf("reset: %s", ev.Reason)
		case client.EventPut, client.EventDelete:
			if ev.Revision <= prev {
				t.Fatalf("revision %d after %d", ev.Revision, prev)
			}
			if ev.Position != (client.Position{Generation: from.Generation, Cursor: ev.Revision}) {
				t.Errorf("event of revision %d at position %v", ev.Revision, ev.Position)
			}
			prev = ev.Revision
			seen[ev.Revision]++
			got[ev.Revision] = write{ev.Type, ev.Key, string(ev.Value)}
		case client.EventBookmark:
			if ev.Position.Cursor < prev {
				t.Errorf("bookmark %v behind revision %d", ev.Position, prev)
			}
		}
		select {
		case <-writerDone:
			done = prev >= lastRev || (ev.Type == client.EventBookmark && ev.Position.Cursor >= lastRev)
		default:
		}
		if done {
			break
		}
	}
	close(stopCutting)
	cuts := <-cutterDone
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	if !done {
		t.Fatal("the watch ended before the last write")
	}
	for rev, w := range writes {
		if seen[rev] != 1 {
			t.Errorf("write of revision %d (%v %s) seen %d times", rev, w.op, w.key, seen[rev])
		} else if got[rev] != w {
			t.Errorf("revision %d: got %+v, want %+v", rev, got[rev], w)
		}
	}
	for rev := range seen {
		if _, ok := writes[rev]; !ok {
			t.Errorf("a change of revision %d that was not written under the prefix", rev)
		}
	}
	if dups := client.Duplicates() - dupsBefore; dups != 0 {
		t.Errorf("the service sent %d changes again after a resume (the client dropped them)", dups)
	}
	t.Logf("%d changes under the prefix, %d cuts, %d retries", len(writes), cuts, retries)
	if cuts < minCuts || retries < cuts {
		t.Errorf("only %d cuts and %d retries: the test did not exercise resuming", cuts, retries)
	}
}

// TestWatchReset: a watch from a position of another generation ends with
// one reset event, which says where the fold is; a read and a watch from
// its position then go on.
func TestWatchReset(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	c := e.client()
	rev := e.put("r.a", []byte("one"))
	if _, _, err := c.Get(ctx, "f", "r.a", client.MinCursor(rev, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var events []client.Event
	for ev, err := range c.Watch(ctx, "f", client.WatchOptions{From: client.Position{Generation: 99, Cursor: 1}}) {
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		events = append(events, ev)
	}
	if len(events) != 1 || events[0].Type != client.EventReset {
		t.Fatalf("events %+v, want one reset", events)
	}
	r := events[0]
	if !strings.Contains(r.Reason, "generation 99") || r.Position.Generation != 1 || r.Position.Cursor < rev {
		t.Errorf("reset %+v: want the reason naming generation 99 and the fold's position, generation 1 at %d or later", r, rev)
	}

	// The model: read again, watch from the read.
	var from client.Position
	keys := 0
	for _, err := range c.Scan(ctx, "f", "r.", client.ScanPosition(&from), client.MinCursor(rev, 10*time.Second)) {
		if err != nil {
			t.Fatal(err)
		}
		keys++
	}
	if keys != 1 || from.Generation != 1 {
		t.Fatalf("scan: %d keys at %v", keys, from)
	}
	rev = e.put("r.b", []byte("two"))
	for ev, err := range c.Watch(ctx, "f", client.WatchOptions{Prefix: "r.", From: from}) {
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if ev.Type == client.EventReset {
			t.Fatalf("reset again: %s", ev.Reason)
		}
		if ev.Type == client.EventPut {
			if ev.Key != "r.b" || string(ev.Value) != "two" || ev.Revision != rev {
				t.Errorf("first put after the read: %+v", ev)
			}
			break
		}
	}
}

// TestWatchFromNow: without From, a watch starts at the fold's position
// when it starts: its first event is a bookmark there, and the changes
// after it follow; an unknown fold is an error, not retried.
func TestWatchFromNow(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	c := e.client()
	before := e.put("n.old", []byte("before the watch"))
	if _, _, err := c.Get(ctx, "f", "n.old", client.MinCursor(before, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var rev uint64
	n := 0
	for ev, err := range c.Watch(ctx, "f", client.WatchOptions{Prefix: "n.", Bookmark: 100 * time.Millisecond}) {
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		n++
		if n == 1 {
			if ev.Type != client.EventBookmark || ev.Position.Generation != 1 || ev.Position.Cursor < before {
				t.Fatalf("first event %+v, want a bookmark at cursor %d or later", ev, before)
			}
			rev = e.put("n.new", []byte("after"))
			continue
		}
		if ev.Type == client.EventPut {
			if ev.Key != "n.new" || ev.Revision != rev {
				t.Errorf("put %+v, want n.new at revision %d", ev, rev)
			}
			break
		}
		if ev.Type != client.EventBookmark {
			t.Fatalf("event %+v", ev)
		}
	}

	retried := false
	var last error
	for _, err := range c.Watch(ctx, "nofold", client.WatchOptions{OnRetry: func(error, time.Duration) { retried = true }}) {
		last = err
	}
	if !errors.Is(last, client.ErrNoFold) || retried {
		t.Errorf("watch of an unknown fold: %v (retried: %t), want ErrNoFold at once", last, retried)
	}

	// A context that ends ends the watch with its error.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	last = nil
	for ev, err := range c.Watch(cctx, "f", client.WatchOptions{Bookmark: 100 * time.Millisecond}) {
		if err != nil {
			last = err
			continue
		}
		if ev.Type == client.EventBookmark {
			cancel()
		}
	}
	if !errors.Is(last, context.Canceled) {
		t.Errorf("watch after its context ended: %v", last)
	}
}
