package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/storepb"
	"github.com/slipstreamkv/slipstream/sdk"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// These tests put the host's client (internal/pluginhost) in front of this
// package's server, on a unix socket with the message limits Serve and
// Launch use: both halves of the protocol, without a plugin process.

// batchRecorder is a Store that keeps the batches it is given.
type batchRecorder struct {
	mu      sync.Mutex
	batches []*sdk.Batch
}

func (r *batchRecorder) Open(context.Context, string, []byte) (sdk.State, error) {
	return sdk.State{}, nil
}
func (r *batchRecorder) Apply(_ context.Context, b *sdk.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
	return nil
}
func (r *batchRecorder) Get(context.Context, []byte) (sdk.Entry, error) {
	return sdk.Entry{}, sdk.ErrNotFound
}
func (r *batchRecorder) Scan(context.Context, sdk.Range, func(sdk.Entry) error) error { return nil }
func (r *batchRecorder) Stats(context.Context) (sdk.Stats, error)                     { return sdk.Stats{}, nil }
func (r *batchRecorder) Close(context.Context) error                                  { return nil }

func (r *batchRecorder) applied() []*sdk.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sdk.Batch(nil), r.batches...)
}

// serve serves s on a socket and returns the host's client of it and the
// raw protocol client, for requests the host would never send.
func serve(t *testing.T, s sdk.Store, opts ...grpc.ServerOption) (*pluginhost.Plugin, storepb.StoreClient) {
	t.Helper()
	p, rpc, _ := serveStoppable(t, s, opts...)
	return p, rpc
}

// serveStoppable is serve, and stop ends the server as the death of a
// plugin process would.
func serveStoppable(t *testing.T, s sdk.Store, opts ...grpc.ServerOption) (p *pluginhost.Plugin, rpc storepb.StoreClient, stop func()) {
	t.Helper()
	return serveStoreServer(t, sdk.NewServer(s), opts...)
}

// serveStoreServer is serveStoppable for any server of the protocol, the
// SDK's or a stand-in for a plugin of another version.
func serveStoreServer(t *testing.T, ss storepb.StoreServer, opts ...grpc.ServerOption) (p *pluginhost.Plugin, rpc storepb.StoreClient, stop func()) {
	t.Helper()
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "store.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(storepb.MaxMessageBytes), grpc.MaxSendMsgSize(storepb.MaxMessageBytes))...)
	storepb.RegisterStoreServer(srv, ss)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(storepb.MaxMessageBytes), grpc.MaxCallSendMsgSize(storepb.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	p, err = pluginhost.Connect(context.Background(), conn, "test store")
	if err != nil {
		t.Fatal(err)
	}
	return p, storepb.NewStoreClient(conn), srv.Stop
}

// opened is serve with the store open.
func opened(t *testing.T, s sdk.Store, opts ...grpc.ServerOption) (*pluginhost.Plugin, storepb.StoreClient) {
	t.Helper()
	p, rpc := serve(t, s, opts...)
	if _, err := p.Open(context.Background(), t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	return p, rpc
}

// testBatch is n mutations: every tenth a delete, values of 0 to 8191
// bytes (the large batch spans several 4 MiB chunks).
func testBatch(n int) *sdk.Batch {
	b := &sdk.Batch{Cursor: uint64(n), Meta: map[string][]byte{"gen": []byte("7")}}
	for i := range n {
		m := sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "k%05d", i), Value: bytes.Repeat([]byte{byte(i)}, i%8192), Revision: uint64(i)}
		if i%10 == 0 {
			m = sdk.Mutation{Op: sdk.OpDelete, Key: m.Key}
		}
		b.Mutations = append(b.Mutations, m)
	}
	return b
}

func checkBatch(t *testing.T, b, want *sdk.Batch) {
	t.Helper()
	if b.Cursor != want.Cursor || !bytes.Equal(b.Meta["gen"], want.Meta["gen"]) || len(b.Mutations) != len(want.Mutations) {
		t.Fatalf("got cursor %d, meta %q, %d mutations; want %d, %q, %d", b.Cursor, b.Meta, len(b.Mutations), want.Cursor, want.Meta, len(want.Mutations))
	}
	for i, m := range b.Mutations {
		w := want.Mutations[i]
		if m.Op != w.Op || !bytes.Equal(m.Key, w.Key) || !bytes.Equal(m.Value, w.Value) || m.Revision != w.Revision {
			t.Fatalf("mutation %d is %v %q (%d bytes, rev %d); want %v %q (%d bytes, rev %d)",
				i, m.Op, m.Key, len(m.Value), m.Revision, w.Op, w.Key, len(w.Value), w.Revision)
		}
	}
}

// TestBatchesArriveWhole sends a small batch (one message) and a batch
// several chunks long, and checks the store gets each as one Apply, every
// mutation in order and intact.
func TestBatchesArriveWhole(t *testing.T) {
	for _, n := range []int{10, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rec := &batchRecorder{}
			p, _ := opened(t, rec)
			want := testBatch(n)
			if err := p.Apply(context.Background(), want); err != nil {
				t.Fatal(err)
			}
			got := rec.applied()
			if len(got) != 1 {
				t.Fatalf("the store saw %d Apply calls; want 1", len(got))
			}
			checkBatch(t, got[0], want)
		})
	}
}

// TestClientSendsOnePackedRun checks what goes on the wire for a small
// batch: one request, its mutations packed.
func TestClientSendsOnePackedRun(t *testing.T) {
	var (
		reqs []*storepb.ApplyRequest
		mu   sync.Mutex
	)
	record := grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*storepb.ApplyRequest); ok {
			mu.Lock()
			reqs = append(reqs, r)
			mu.Unlock()
		}
		return next(ctx, req)
	})
	p, _ := opened(t, &batchRecorder{}, record)
	if err := p.Apply(context.Background(), testBatch(10)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) != 1 || len(reqs[0].GetPacked().GetOps()) != 10 || !reqs[0].GetLast() {
		t.Fatalf("the wire carried %d requests; want one, last, with 10 packed mutations", len(reqs))
	}
}

// TestMalformedPackedAppliesNothing sends packed runs whose fields disagree:
// each is refused as InvalidArgument and the store sees none of it.
func TestMalformedPackedAppliesNothing(t *testing.T) {
	good := func() *storepb.Packed { return sdk.Pack(testBatch(3).Mutations) }
	cases := map[string]func(p *storepb.Packed){
		"short ops":          func(p *storepb.Packed) { p.Ops = p.Ops[:2] },
		"short revisions":    func(p *storepb.Packed) { p.Revisions = p.Revisions[:2] },
		"data too long":      func(p *storepb.Packed) { p.Data = append(p.Data, 'x') },
		"data too short":     func(p *storepb.Packed) { p.Data = p.Data[:len(p.Data)-1] },
		"key past the data":  func(p *storepb.Packed) { p.KeyLengths[0] += 1 << 31; p.KeyLengths[1] += 1 << 31 },
		"unknown op":         func(p *storepb.Packed) { p.Ops[2] = 9 },
		"unspecified op":     func(p *storepb.Packed) { p.Ops[1] = byte(storepb.Op_OP_UNSPECIFIED) },
		"value lengths gone": func(p *storepb.Packed) { p.ValueLengths = nil },
	}
	rec := &batchRecorder{}
	_, rpc := opened(t, rec)
	ctx := context.Background()
	for name, spoil := range cases {
		p := good()
		spoil(p)
		_, err := rpc.Apply(ctx, &storepb.ApplyRequest{Packed: p, Cursor: 3, Last: true})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: Apply = %v; want InvalidArgument", name, err)
		}
	}
	if n := len(rec.applied()); n != 0 {
		t.Errorf("the store saw %d Apply calls; want none", n)
	}
	// The same request unspoiled is applied: the cases fail for their fault.
	if _, err := rpc.Apply(ctx, &storepb.ApplyRequest{Packed: good(), Cursor: 3, Last: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.applied()); n != 1 {
		t.Errorf("the store saw %d Apply calls; want 1", n)
	}
}

// TestCutStreamAppliesNothing ends a batch stream before its last chunk:
// the store must not see any of it.
func TestCutStreamAppliesNothing(t *testing.T) {
	rec := &batchRecorder{}
	_, rpc := opened(t, rec)
	stream, err := rpc.ApplyStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&storepb.ApplyRequest{Packed: sdk.Pack(testBatch(3).Mutations)}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.CloseAndRecv()
	if status.Code(err) != codes.Aborted {
		t.Errorf("a stream without its last chunk ended with %v; want Aborted", err)
	}
	if n := len(rec.applied()); n != 0 {
		t.Errorf("the store saw %d Apply calls; want none", n)
	}
}

// TestOnlyPutsAndDeletesCrossTheWire: a batch holding any other op (a purge
// the fold failed to send as a delete) fails whole; the store sees none of
// it.
func TestOnlyPutsAndDeletesCrossTheWire(t *testing.T) {
	rec := &batchRecorder{}
	p, _ := opened(t, rec)
	for _, op := range []sdk.Op{sdk.OpPurge, 0, 9} {
		b := testBatch(3)
		b.Mutations[1].Op = op
		if err := p.Apply(context.Background(), b); err == nil || !strings.Contains(err.Error(), "op") {
			t.Errorf("a batch with %v applied (err %v); want it refused", op, err)
		}
	}
	if n := len(rec.applied()); n != 0 {
		t.Errorf("the store saw %d Apply calls; want none", n)
	}
	if err := p.Apply(context.Background(), testBatch(3)); err != nil {
		t.Fatalf("the same batch with puts and deletes: %v", err)
	}
}

// TestSentinelsCrossTheBoundary checks the errors the host branches on.
func TestSentinelsCrossTheBoundary(t *testing.T) {
	p, _ := serve(t, &batchRecorder{})
	ctx := context.Background()
	if _, err := p.Get(ctx, []byte("k")); !errors.Is(err, sdk.ErrClosed) {
		t.Errorf("Get before Open = %v; want ErrClosed", err)
	}
	if _, err := p.Open(ctx, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, []byte("k")); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get of an absent key = %v; want ErrNotFound", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, &sdk.Batch{Cursor: 1}); !errors.Is(err, sdk.ErrClosed) {
		t.Errorf("Apply after Close = %v; want ErrClosed", err)
	}
}

// loadingStore is a store with every optional interface.
type loadingStore struct {
	batchRecorder
	loads, compacts, snapshots int
}

func (s *loadingStore) BeginLoad(context.Context) error { s.loads++; return nil }
func (s *loadingStore) EndLoad(context.Context) error   { return nil }
func (s *loadingStore) Compact(context.Context) error   { s.compacts++; return nil }
func (s *loadingStore) Describe() sdk.Info              { return sdk.Info{Name: "loading", Version: "3"} }
func (s *loadingStore) Snapshot(context.Context) (sdk.Snapshot, error) {
	s.snapshots++
	return &fixedView{state: sdk.State{Cursor: 41}}, nil
}

// TestCapabilitiesAreInterfaces: the host sees a capability exactly when
// the store implements its interface, and its calls reach the store.
func TestCapabilitiesAreInterfaces(t *testing.T) {
	ctx := context.Background()
	plain, _ := opened(t, &batchRecorder{})
	if _, ok := plain.Loader(); ok {
		t.Error("a store without BeginLoad and EndLoad has a Loader")
	}
	if _, ok := plain.Compacter(); ok {
		t.Error("a store without Compact has a Compacter")
	}
	if _, ok := plain.Snapshotter(); ok {
		t.Error("a store without Snapshot has a Snapshotter")
	}
	if info := plain.Info(); info != (sdk.Info{}) {
		t.Errorf("a store that does not describe itself is %+v", info)
	}
	s := &loadingStore{}
	full, _ := opened(t, s)
	l, ok := full.Loader()
	if !ok {
		t.Fatal("a store with BeginLoad and EndLoad has no Loader")
	}
	c, ok := full.Compacter()
	if !ok {
		t.Fatal("a store with Compact has no Compacter")
	}
	sn, ok := full.Snapshotter()
	if !ok {
		t.Fatal("a store with Snapshot has no Snapshotter")
	}
	view, err := sn.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cursor := view.State().Cursor; cursor != 41 {
		t.Errorf("the view is at cursor %d; want the store's 41", cursor)
	}
	if err := view.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if s.loads != 1 || s.compacts != 1 || s.snapshots != 1 {
		t.Errorf("the store saw %d loads, %d compactions and %d snapshots; want 1 of each", s.loads, s.compacts, s.snapshots)
	}
	if info := full.Info(); info != (sdk.Info{Name: "loading", Version: "3"}) {
		t.Errorf("Info = %+v", info)
	}
}

// failingRecorder is a batchRecorder whose Apply fails for one cursor.
type failingRecorder struct {
	batchRecorder
	failAt uint64
}

func (r *failingRecorder) Apply(ctx context.Context, b *sdk.Batch) error {
	if b.Cursor == r.failAt {
		return fmt.Errorf("disk full at cursor %d", b.Cursor)
	}
	return r.batchRecorder.Apply(ctx, b)
}

// pipeBatches are four batches, the third several chunks long.
func pipeBatches() []*sdk.Batch {
	var bs []*sdk.Batch
	for i, n := range []int{10, 1, 5000, 3} {
		b := testBatch(n)
		b.Cursor = uint64(i + 1)
		bs = append(bs, b)
	}
	return bs
}

// openPipe is a pipe to s, served on a socket and open.
func openPipe(t *testing.T, s sdk.Store) pluginhost.BatchPipe {
	t.Helper()
	c, _ := opened(t, s)
	p, err := c.Pipe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestPipeCommitsInOrder sends every batch before waiting for any: the
// store gets each whole, in the order sent, and Wait returns each cursor.
func TestPipeCommitsInOrder(t *testing.T) {
	rec := &batchRecorder{}
	p := openPipe(t, rec)
	want := pipeBatches()
	for _, b := range want {
		if err := p.Send(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range want {
		cursor, err := p.Wait()
		if err != nil || cursor != b.Cursor {
			t.Fatalf("Wait = %d, %v; want %d", cursor, err, b.Cursor)
		}
	}
	got := rec.applied()
	if len(got) != len(want) {
		t.Fatalf("the store saw %d batches; want %d", len(got), len(want))
	}
	for i := range want {
		checkBatch(t, got[i], want[i])
	}
}

// TestPipeStopsAtTheFirstFailure fails the second batch: Wait reports its
// error, and the batches sent after it are not applied.
func TestPipeStopsAtTheFirstFailure(t *testing.T) {
	rec := &failingRecorder{failAt: 2}
	p := openPipe(t, rec)
	for _, b := range pipeBatches() {
		// A Send after the plugin ended the pipe fails; that is allowed.
		_ = p.Send(b)
	}
	if cursor, err := p.Wait(); err != nil || cursor != 1 {
		t.Fatalf("first Wait = %d, %v; want 1", cursor, err)
	}
	if _, err := p.Wait(); err == nil || !strings.Contains(err.Error(), "disk full at cursor 2") {
		t.Fatalf("second Wait = %v; want the store's error", err)
	}
	got := rec.applied()
	if len(got) != 1 || got[0].Cursor != 1 {
		t.Fatalf("the store applied %d batches; want only cursor 1", len(got))
	}
}

// TestPipeCutMidBatchAppliesOnlyWholeBatches ends a pipe inside a batch:
// the whole batch before it is applied, the cut one is not.
func TestPipeCutMidBatchAppliesOnlyWholeBatches(t *testing.T) {
	rec := &batchRecorder{}
	_, rpc := opened(t, rec)
	stream, err := rpc.ApplyPipe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	whole := &storepb.ApplyRequest{Packed: sdk.Pack(testBatch(3).Mutations), Cursor: 7, Last: true}
	cut := &storepb.ApplyRequest{Packed: sdk.Pack(testBatch(3).Mutations)}
	for _, req := range []*storepb.ApplyRequest{whole, cut} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetCursor() != 7 {
		t.Fatalf("first answer = %v, %v; want cursor 7", resp, err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Aborted {
		t.Fatalf("the cut pipe ended with %v; want Aborted", err)
	}
	if got := rec.applied(); len(got) != 1 || got[0].Cursor != 7 {
		t.Fatalf("the store applied %d batches; want only cursor 7", len(got))
	}
}
