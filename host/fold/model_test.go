package fold_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
	"pgregory.net/rapid"
)

// disk is what a flaky store has committed; it survives the store's
// "process".
type disk struct {
	mu      sync.Mutex
	data    map[string]sdk.Entry
	cursor  uint64
	meta    map[string][]byte
	cursors []uint64 // every committed cursor, in order
}

// flakyStore is an in-memory fold.Handle whose Apply fails or "crashes" at
// random; a failed Apply commits nothing, as the contract requires.
type flakyStore struct {
	d       *disk
	rng     *rand.Rand
	fail    float64     // probability an Apply returns an error
	crash   float64     // probability an Apply kills the "process"
	exited  atomic.Bool // read by readers and the session concurrently
	applies int
}

var errInjected = errors.New("injected apply failure")

func (s *flakyStore) Open(context.Context, string, []byte) (sdk.State, error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return sdk.State{Cursor: s.d.cursor, Meta: maps.Clone(s.d.meta)}, nil
}

func (s *flakyStore) Apply(_ context.Context, b *sdk.Batch) error {
	if s.exited.Load() {
		return pluginhost.ErrPluginUnavailable
	}
	s.applies++
	switch r := s.rng.Float64(); {
	case r < s.crash:
		s.exited.Store(true)
		return pluginhost.ErrPluginUnavailable
	case r < s.crash+s.fail:
		return errInjected
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	for _, m := range b.Mutations {
		if m.Op == sdk.OpDelete {
			delete(s.d.data, string(m.Key))
		} else {
			s.d.data[string(m.Key)] = sdk.Entry{Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value), Revision: m.Revision}
		}
	}
	maps.Copy(s.d.meta, b.Meta)
	s.d.cursor = b.Cursor
	s.d.cursors = append(s.d.cursors, b.Cursor)
	return nil
}

func (s *flakyStore) Get(_ context.Context, key []byte) (sdk.Entry, error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	e, ok := s.d.data[string(key)]
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	return e, nil
}

func (s *flakyStore) Scan(_ context.Context, _ sdk.Range, fn func(sdk.Entry) error) error {
	s.d.mu.Lock()
	keys := slices.Sorted(maps.Keys(s.d.data))
	entries := make([]sdk.Entry, len(keys))
	for i, k := range keys {
		entries[i] = s.d.data[k]
	}
	s.d.mu.Unlock()
	for _, e := range entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (s *flakyStore) Stats(context.Context) (sdk.Stats, error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return sdk.Stats{Keys: uint64(len(s.d.data))}, nil
}

func (s *flakyStore) Close(context.Context) error          { return nil }
func (s *flakyStore) Shutdown(context.Context) error       { return nil }
func (s *flakyStore) Exited() bool                         { return s.exited.Load() }
func (s *flakyStore) Loader() (sdk.Loader, bool)           { return nil, false }
func (s *flakyStore) Snapshotter() (sdk.Snapshotter, bool) { return nil, false }

// flakyPiper is a flakyStore with an apply pipe. Each batch is applied
// as it is sent, before the host has waited for the ones before it (as far
// ahead as a plugin can be), with the same failures and crashes; the first
// failure ends the pipe, and nothing sent after it is applied.
type flakyPiper struct{ *flakyStore }

func (s flakyPiper) Pipe(context.Context) (pluginhost.BatchPipe, error) {
	return &flakyPipe{s: s.flakyStore}, nil
}

type flakyPipe struct {
	s       *flakyStore
	mu      sync.Mutex
	results []error // of the batches sent and not yet waited for
	cursors []uint64
	ended   bool // a batch failed: the pipe takes no more
	closed  bool
}

func (p *flakyPipe) Send(b *sdk.Batch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.ended {
		return errors.New("the apply pipe is closed")
	}
	err := p.s.Apply(context.Background(), b)
	p.ended = err != nil
	p.results, p.cursors = append(p.results, err), append(p.cursors, b.Cursor)
	return nil
}

func (p *flakyPipe) Wait() (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, context.Canceled
	}
	if len(p.results) == 0 {
		return 0, errors.New("apply pipe: Wait without a batch sent")
	}
	err, cursor := p.results[0], p.cursors[0]
	p.results, p.cursors = p.results[1:], p.cursors[1:]
	return cursor, err
}

func (p *flakyPipe) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
}

// checkCursorAuthority publishes a random history, folds it through stores
// that fail and crash at random (with an apply pipe or without), and requires that the fold ends equal to
// the bucket with the cursor at the stream's end, and that no committed
// cursor ever went backwards.
func checkCursorAuthority(t *rapid.T, js jetstream.JetStream, hooks fold.Hooks, n *int) {
	*n++
	bucket := fmt.Sprintf("m%d", *n)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	defer js.DeleteKeyValue(ctx, bucket)
	keys := []string{"a", "b", "c", "d", "e"}
	ops := rapid.IntRange(1, 40).Draw(t, "ops")
	for i := range ops {
		k := rapid.SampledFrom(keys).Draw(t, "key")
		if rapid.IntRange(0, 3).Draw(t, "op") == 0 {
			err = kv.Delete(ctx, k)
		} else {
			_, err = kv.Put(ctx, k, []byte(fmt.Sprint(i)))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	last := s.CachedInfo().State.LastSeq
	d := &disk{data: map[string]sdk.Entry{}, meta: map[string][]byte{}}
	dir, err := os.MkdirTemp("", "fold-model-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 1))
	fail := rapid.Float64Range(0, 0.4).Draw(t, "fail")
	crash := rapid.Float64Range(0, 0.2).Draw(t, "crash")
	piped := rapid.Bool().Draw(t, "piped")
	cfg := fold.Config{
		Name: bucket, Bucket: bucket, Dir: dir,
		MaxEntries: rapid.IntRange(1, 8).Draw(t, "batch"),
		Launch: func(context.Context) (fold.Handle, error) {
			s := &flakyStore{d: d, rng: rng, fail: fail, crash: crash}
			if piped {
				return flakyPiper{s}, nil
			}
			return s, nil
		},
		CheckEvery: 20 * time.Millisecond,
		RetryMin:   time.Millisecond,
		RetryMax:   10 * time.Millisecond,
	}
	cfg.SetHooks(hooks)
	f := fold.New(cfg, js)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(rctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := f.Status(ctx)
		if st.Ready && st.Cursor >= last {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("fold never caught up: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, e := range d.data {
		got[k] = string(e.Value)
	}
	want := testenv.Contents(t, kv, "")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fold %v, bucket %v (cursor %d, commits %v)", got, want, d.cursor, d.cursors)
	}
	for i := 1; i < len(d.cursors); i++ {
		if d.cursors[i] < d.cursors[i-1] {
			t.Fatalf("the committed cursor went back: %v", d.cursors)
		}
	}
}

// TestCursorAuthorityModel drives the real fold (watch, batcher, applier,
// supervisor) against a real server with stores that fail and crash.
func TestCursorAuthorityModel(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	n := 0
	rapid.Check(t, func(rt *rapid.T) { checkCursorAuthority(rt, js, fold.Hooks{}, &n) })
}

// TestCursorAuthorityModelCatchesCursorBeforeApply: with the cursor moved
// before the store applies, a failed batch leaves a hole; the model finds it.
func TestCursorAuthorityModelCatchesCursorBeforeApply(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	n := 0
	if !testenv.RapidFails(100, func(rt *rapid.T) { checkCursorAuthority(rt, js, fold.Hooks{CursorBeforeApply: true}, &n) }) {
		t.Fatal("the cursor-authority model did not catch a cursor committed before apply")
	}
}
