package fold_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

func TestMain(m *testing.M) {
	// The fold's model tests run a real fold per case: fewer, longer cases.
	_ = flag.Set("rapid.checks", "40")
	os.Exit(testenv.Main(m))
}

// harness runs one fold against a real server and the real SQLite plugin.
type harness struct {
	t      *testing.T
	js     jetstream.JetStream
	cfg    fold.Config
	f      *fold.Fold
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	plugins []*pluginhost.Plugin
}

func newHarness(t *testing.T, js jetstream.JetStream, bucket string, filters []string, dir string) *harness {
	h := &harness{t: t, js: js}
	h.cfg = fold.Config{
		Name: "test", Bucket: bucket, Filters: filters, Dir: dir,
		StoreConfig: []byte(`{}`),
		CheckEvery:  50 * time.Millisecond,
	}
	h.usePlugin(testenv.SQLitePlugin(t))
	if os.Getenv("SLIPSTREAM_TEST_LOG") != "" {
		h.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return h
}

// usePlugin makes the fold launch the plugin binary bin.
func (h *harness) usePlugin(bin string) {
	h.cfg.Launch = func(ctx context.Context) (fold.Handle, error) {
		p, err := pluginhost.Launch(ctx, pluginhost.Config{Path: bin})
		if err == nil {
			h.mu.Lock()
			h.plugins = append(h.plugins, p)
			h.mu.Unlock()
		}
		return p, err
	}
}

// wrapLaunch makes every plugin the fold launches from now on the Handle
// wrap returns for it.
func (h *harness) wrapLaunch(wrap func(p *pluginhost.Plugin) fold.Handle) {
	launch := h.cfg.Launch
	h.cfg.Launch = func(ctx context.Context) (fold.Handle, error) {
		hd, err := launch(ctx)
		if err != nil {
			return nil, err
		}
		return wrap(hd.(*pluginhost.Plugin)), nil
	}
}

func (h *harness) start() {
	h.f = fold.New(h.cfg, h.js)
	h.run()
}

// run runs h.f, which a test made.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.f.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("fold run: %v", err)
	}
	h.cancel = nil
}

// launched is how many plugins the fold has launched.
func (h *harness) launched() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.plugins)
}

func (h *harness) lastPlugin() *pluginhost.Plugin {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.plugins[len(h.plugins)-1]
}

// contents reads the published generation.
func (h *harness) contents() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	err := h.f.Scan(context.Background(), sdk.Range{}, func(e sdk.Entry) error {
		out[string(e.Key)] = string(e.Value)
		return nil
	})
	if err != nil {
		h.t.Fatalf("scan fold: %v", err)
	}
	return out
}

// waitSynced waits until the fold is ready and its cursor reached seq.
func (h *harness) waitSynced(seq uint64) fold.Status {
	h.t.Helper()
	var st fold.Status
	testenv.Eventually(h.t, 60*time.Second, fmt.Sprintf("fold synced at cursor >= %d", seq), func() bool {
		st = h.f.Status(context.Background())
		return st.Ready && st.Cursor >= seq
	})
	return st
}

func lastSeq(t *testing.T, js jetstream.JetStream, bucket string) (first, last uint64) {
	t.Helper()
	s, err := js.Stream(context.Background(), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	return st.FirstSeq, st.LastSeq
}

func diff(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("fold lacks %q", k)
		} else if g != v {
			t.Errorf("fold has %q=%q, bucket has %q", k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("fold has %q, which the bucket does not", k)
		}
	}
}

// verified asks the fold itself whether it matches its bucket: the check
// `slipstream verify` runs.
func (h *harness) verified() {
	h.t.Helper()
	sum, diffs, err := h.f.Verify(context.Background())
	if err != nil {
		h.t.Fatalf("verify: %v", err)
	}
	if sum.Diverged() {
		h.t.Errorf("verify reports divergence: %+v %+v", sum, diffs)
	}
}

func putAll(t *testing.T, js jetstream.JetStream, bucket string, n int, prefix, value string) {
	t.Helper()
	for i := range n {
		if _, err := js.PublishAsync(fmt.Sprintf("$KV.%s.%s%06d", bucket, prefix, i), []byte(value+fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("publish did not complete")
			}
		}
	}
}

func TestBootstrapTenThousandKeys(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	putAll(t, js, "cfg", 10000, "route.k", "v")
	_, last := lastSeq(t, js, "cfg")

	h := newHarness(t, js, "cfg", nil, t.TempDir())
	h.start()
	st := h.waitSynced(last)
	if st.Cursor != last {
		t.Errorf("cursor %d, stream last sequence %d", st.Cursor, last)
	}
	if st.Keys != 10000 {
		t.Errorf("store reports %d keys, want 10000", st.Keys)
	}
	diff(t, h.contents(), testenv.Contents(t, kv, ""))
}

// counter is a pass-through transform that counts what it sees.
type counter struct{ n atomic.Int64 }

func (c *counter) Digest() string { return "" }
func (c *counter) Apply(_ context.Context, in []sdk.Mutation) ([]sdk.Mutation, error) {
	c.n.Add(int64(len(in)))
	return in, nil
}

func TestRestartReceivesExactlyTheDelta(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx := context.Background()
	putAll(t, js, "cfg", 500, "k", "v")
	_, last := lastSeq(t, js, "cfg")
	dir := t.TempDir()

	h := newHarness(t, js, "cfg", nil, dir)
	h.start()
	h.waitSynced(last)
	h.stop()

	// While the fold is down: 40 overwrites, 7 deletes, 3 new keys.
	const changes = 50
	for i := range 40 {
		if _, err := kv.Put(ctx, fmt.Sprintf("k%05d", i*3), []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 7 {
		if err := kv.Delete(ctx, fmt.Sprintf("k%05d", 400+i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := kv.Put(ctx, fmt.Sprintf("n%d", i), []byte("fresh")); err != nil {
			t.Fatal(err)
		}
	}
	_, last = lastSeq(t, js, "cfg")

	c := &counter{}
	h2 := newHarness(t, js, "cfg", nil, dir)
	h2.cfg.Transform = c
	h2.start()
	// The transform digest is part of the fold's identity; "" equals none.
	st := h2.waitSynced(last)
	if got := c.n.Load(); got != changes {
		t.Errorf("restarted fold received %d updates, want exactly the %d made while it was down", got, changes)
	}
	if st.Generation != 1 {
		t.Errorf("generation %d: the restart rebuilt instead of resuming", st.Generation)
	}
	diff(t, h2.contents(), testenv.Contents(t, kv, ""))
}
