package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/storepb"
	"github.com/slipstreamkv/slipstream/sdk"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fixedView is a Snapshot of fixed entries that records what it is asked.
type fixedView struct {
	state   sdk.State
	entries []sdk.Entry

	mu     sync.Mutex
	ranges []sdk.Range
	closes int
}

func (v *fixedView) State() sdk.State { return v.state }

func (v *fixedView) Scan(_ context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	v.mu.Lock()
	v.ranges = append(v.ranges, r)
	closed := v.closes > 0
	v.mu.Unlock()
	if closed {
		return sdk.ErrClosed
	}
	for _, e := range v.entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (v *fixedView) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closes++
	return nil
}

func (v *fixedView) seen() (ranges []sdk.Range, closes int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]sdk.Range(nil), v.ranges...), v.closes
}

// viewStore is a batchRecorder with views: view n is at cursor n (the
// number of batches applied) and holds one entry that names n. Its Close
// leaves its views open, so that what closes them is the server. With a
// gate, Apply signals entered and waits for the gate to close.
type viewStore struct {
	batchRecorder
	gate, entered chan struct{}
	// With slowSnap, Snapshot opens its view only once its context ended.
	slowSnap bool

	mu    sync.Mutex
	views []*fixedView
}

func (s *viewStore) Apply(ctx context.Context, b *sdk.Batch) error {
	if s.gate != nil {
		close(s.entered)
		<-s.gate
	}
	return s.batchRecorder.Apply(ctx, b)
}

func (s *viewStore) Snapshot(ctx context.Context) (sdk.Snapshot, error) {
	if s.slowSnap {
		<-ctx.Done() // the view opens only once the caller has given up
	}
	n := uint64(len(s.applied()))
	v := &fixedView{
		state:   sdk.State{Cursor: n, Meta: map[string][]byte{"n": fmt.Append(nil, n)}},
		entries: []sdk.Entry{{Key: []byte("view"), Value: fmt.Append(nil, n), Revision: n}},
	}
	s.mu.Lock()
	s.views = append(s.views, v)
	s.mu.Unlock()
	return v, nil
}

func (s *viewStore) view(i int) *fixedView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.views[i]
}

// snapshotterOf is p's Snapshotter, which it must have.
func snapshotterOf(t *testing.T, p *pluginhost.Plugin) sdk.Snapshotter {
	t.Helper()
	sn, ok := p.Snapshotter()
	if !ok {
		t.Fatal("a store with Snapshot has no Snapshotter")
	}
	return sn
}

// scanView returns the entries of a view's Scan of r.
func scanView(ctx context.Context, v sdk.Snapshot, r sdk.Range) ([]sdk.Entry, error) {
	var out []sdk.Entry
	err := v.Scan(ctx, r, func(e sdk.Entry) error {
		out = append(out, sdk.Entry{Key: bytes.Clone(e.Key), Value: bytes.Clone(e.Value), Revision: e.Revision})
		return nil
	})
	return out, err
}

// TestSnapshotsCrossTheBoundary: a view's state, its scans (with every
// field of the range) and its Close reach the store's view; a closed view,
// an unknown one and the views of a closed store answer as they should.
func TestSnapshotsCrossTheBoundary(t *testing.T) {
	ctx := context.Background()
	s := &viewStore{}
	p, rpc := opened(t, s)
	sn := snapshotterOf(t, p)
	for i := range 2 {
		if err := p.Apply(ctx, &sdk.Batch{Cursor: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := sn.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, &sdk.Batch{Cursor: 3}); err != nil {
		t.Fatal(err)
	}
	second, err := sn.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := first.State(); st.Cursor != 2 || string(st.Meta["n"]) != "2" || st.Loading {
		t.Errorf("the first view's State is %+v; want cursor 2, meta n=2", st)
	}
	if st := second.State(); st.Cursor != 3 || string(st.Meta["n"]) != "3" {
		t.Errorf("the second view's State is %+v; want cursor 3, meta n=3", st)
	}
	r := sdk.Range{Prefix: []byte("p"), Start: []byte("s"), End: []byte("t"), After: []byte("a"), Limit: 3, KeysOnly: true}
	for i, v := range []sdk.Snapshot{first, second} {
		got, err := scanView(ctx, v, r)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint(i + 2)
		if len(got) != 1 || string(got[0].Key) != "view" || got[0].Revision != uint64(i+2) || got[0].Value != nil {
			t.Errorf("view %d scanned %+v; want only key \"view\" at revision %s, keys only", i, got, want)
		}
		if ranges, _ := s.view(i).seen(); len(ranges) != 1 || !reflect.DeepEqual(ranges[0], r) {
			t.Errorf("view %d was asked for %+v; want one scan of %+v", i, ranges, r)
		}
	}
	// A live scan reaches the store, not a view.
	if err := p.Scan(ctx, sdk.Range{}, func(sdk.Entry) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ranges, _ := s.view(0).seen(); len(ranges) != 1 {
		t.Errorf("a live Scan reached a view")
	}

	// Close twice: the store's view is closed once; later scans fail.
	for range 2 {
		if err := first.Close(); err != nil {
			t.Errorf("Close of a view = %v", err)
		}
	}
	if _, closes := s.view(0).seen(); closes != 1 {
		t.Errorf("the store's view was closed %d times; want 1", closes)
	}
	if _, err := scanView(ctx, first, sdk.Range{}); !errors.Is(err, sdk.ErrClosed) {
		t.Errorf("Scan of a closed view = %v; want ErrClosed", err)
	}

	// What the host would never send: ids of views closed and never opened.
	resp, err := rpc.OpenSnapshot(ctx, &storepb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetId()
	if _, err := rpc.CloseSnapshot(ctx, &storepb.SnapshotRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.CloseSnapshot(ctx, &storepb.SnapshotRequest{Id: id}); err != nil {
		t.Errorf("a second CloseSnapshot = %v; want success", err)
	}
	scan := func(id uint64) error {
		stream, err := rpc.Scan(ctx, &storepb.ScanRequest{Snapshot: id})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	if err := scan(id); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Scan of closed snapshot %d = %v; want FailedPrecondition (ErrClosed)", id, err)
	}
	for _, unknown := range []uint64{id + 1, id + 1000} {
		if err := scan(unknown); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Scan of snapshot %d, never opened = %v; want InvalidArgument", unknown, err)
		}
		if _, err := rpc.CloseSnapshot(ctx, &storepb.SnapshotRequest{Id: unknown}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("CloseSnapshot of snapshot %d, never opened = %v; want InvalidArgument", unknown, err)
		}
	}

	// Closing the store closes its open views, though the store does not.
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, closes := s.view(1).seen(); closes != 1 {
		t.Errorf("the open view was closed %d times with the store; want 1", closes)
	}
	if _, err := scanView(ctx, second, sdk.Range{}); !errors.Is(err, sdk.ErrClosed) {
		t.Errorf("Scan of a view of a closed store = %v; want ErrClosed", err)
	}
	if _, err := sn.Snapshot(ctx); !errors.Is(err, sdk.ErrClosed) {
		t.Errorf("Snapshot of a closed store = %v; want ErrClosed", err)
	}
	if err := second.Close(); err != nil {
		t.Errorf("Close of a view the store's Close closed = %v; want nil", err)
	}
	if _, closes := s.view(1).seen(); closes != 1 {
		t.Errorf("the view was closed %d times; want 1", closes)
	}

	// Opened again, the store's old views stay closed; new ones work.
	if _, err := p.Open(ctx, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if err := scan(id - 1); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Scan of a view of the store before it was reopened = %v; want FailedPrecondition (ErrClosed)", err)
	}
	third, err := sn.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := scanView(ctx, third, sdk.Range{}); err != nil || len(got) != 1 {
		t.Errorf("Scan of a view of the reopened store = %d entries, %v; want 1", len(got), err)
	}
	if err := third.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotsDoNotWaitForApply: while an Apply is in the store (holding
// the server's apply lock), a view opens and its Scan answers.
func TestSnapshotsDoNotWaitForApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := &viewStore{}
	p, _ := opened(t, s)
	sn := snapshotterOf(t, p)
	before, err := sn.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.gate, s.entered = make(chan struct{}), make(chan struct{})
	applied := make(chan error, 1)
	go func() { applied <- p.Apply(context.Background(), &sdk.Batch{Cursor: 1}) }()
	<-s.entered
	during, err := sn.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot while an Apply runs: %v", err)
	}
	for _, v := range []sdk.Snapshot{before, during} {
		if got, err := scanView(ctx, v, sdk.Range{}); err != nil || len(got) != 1 {
			t.Errorf("Scan of a view while an Apply runs = %d entries, %v; want 1", len(got), err)
		}
	}
	close(s.gate)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	for _, v := range []sdk.Snapshot{before, during} {
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSnapshotOfDeadPlugin: once the plugin is gone, a view's calls fail
// with ErrPluginUnavailable, as the store's do; a second Close does nothing.
func TestSnapshotOfDeadPlugin(t *testing.T) {
	ctx := context.Background()
	p, _, stop := serveStoppable(t, &viewStore{})
	if _, err := p.Open(ctx, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	sn := snapshotterOf(t, p)
	v, err := sn.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := scanView(ctx, v, sdk.Range{}); !errors.Is(err, pluginhost.ErrPluginUnavailable) {
		t.Errorf("Scan of a view of a dead plugin = %v; want ErrPluginUnavailable", err)
	}
	if _, err := sn.Snapshot(ctx); !errors.Is(err, pluginhost.ErrPluginUnavailable) {
		t.Errorf("Snapshot of a dead plugin = %v; want ErrPluginUnavailable", err)
	}
	if err := v.Close(); !errors.Is(err, pluginhost.ErrPluginUnavailable) {
		t.Errorf("Close of a view of a dead plugin = %v; want ErrPluginUnavailable", err)
	}
	if err := v.Close(); err != nil {
		t.Errorf("a second Close = %v; want nil", err)
	}
}

// TestSnapshotOpenedTooLateIsClosed: a view the store opens after the
// caller's deadline passed (a slow store, a plugin that was stopped) is
// closed by the plugin, since no caller will ever close it.
func TestSnapshotOpenedTooLateIsClosed(t *testing.T) {
	s := &viewStore{slowSnap: true}
	p, _ := opened(t, s)
	sn := snapshotterOf(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := sn.Snapshot(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Snapshot past its deadline = %v; want DeadlineExceeded", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.views)
		s.mu.Unlock()
		if n == 1 {
			if _, closes := s.view(0).seen(); closes == 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the view opened after the caller gave up is still open (%d views)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
