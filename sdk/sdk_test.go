package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/slipstreamkv/slipstream/sdk/internal/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// batchRecorder is a Store that keeps the batches it is given.
type batchRecorder struct {
	mu      sync.Mutex
	batches []*Batch
}

func (r *batchRecorder) Open(context.Context, string, []byte) (State, error) { return State{}, nil }
func (r *batchRecorder) Apply(_ context.Context, b *Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
	return nil
}
func (r *batchRecorder) Get(context.Context, []byte) (Entry, error)           { return Entry{}, ErrNotFound }
func (r *batchRecorder) Scan(context.Context, Range, func(Entry) error) error { return nil }
func (r *batchRecorder) Stats(context.Context) (Stats, error)                 { return Stats{}, nil }
func (r *batchRecorder) Close(context.Context) error                          { return nil }

func (r *batchRecorder) applied() []*Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Batch(nil), r.batches...)
}

// serveOnSocket serves s over gRPC on a unix socket, with the message limits
// Serve and Launch use, and returns both ends of the protocol. The client
// has asked for Info, as Launch does.
func serveOnSocket(t *testing.T, s Store) (*client, storepb.StoreClient) {
	t.Helper()
	return serveServer(t, newServer(s))
}

// serveServer is serveOnSocket for a server given whole, with opts.
func serveServer(t *testing.T, impl storepb.StoreServer, opts ...grpc.ServerOption) (*client, storepb.StoreClient) {
	t.Helper()
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "store.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMessageBytes), grpc.MaxSendMsgSize(maxMessageBytes))...)
	storepb.RegisterStoreServer(srv, impl)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	rpc := storepb.NewStoreClient(conn)
	c := &client{rpc: rpc}
	if _, err := c.info(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, rpc
}

// opened is a client of impl, served on a socket, with the store open.
func opened(t *testing.T, impl storepb.StoreServer) (*client, storepb.StoreClient) {
	t.Helper()
	c, rpc := serveServer(t, impl)
	if _, err := c.Open(context.Background(), t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	return c, rpc
}

// applyOne applies want through c and checks that rec got it whole, as
// its only batch.
func applyOne(t *testing.T, c *client, rec *batchRecorder, want *Batch) {
	t.Helper()
	if err := c.Apply(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	got := rec.applied()
	if len(got) != 1 {
		t.Fatalf("the store saw %d Apply calls; want 1", len(got))
	}
	checkBatch(t, got[0], want)
}

// TestBatchesArriveWhole sends a small batch (one message) and a batch
// several chunks long, packed (as to a plugin of this SDK) and one message
// per mutation (as an older host sends), and checks the store gets each as
// one Apply, every mutation in order and intact.
func TestBatchesArriveWhole(t *testing.T) {
	for _, packed := range []bool{true, false} {
		for _, n := range []int{10, 5000} {
			t.Run(fmt.Sprintf("packed=%v/%d", packed, n), func(t *testing.T) {
				rec := &batchRecorder{}
				c, _ := opened(t, newServer(rec))
				if !c.packed {
					t.Fatal("the client does not pack for a server of this SDK")
				}
				c.packed = packed
				applyOne(t, c, rec, testBatch(n))
			})
		}
	}
}

// testBatch is n mutations: every tenth a delete, values of 0 to 8191
// bytes (the large batch spans several 4 MiB chunks).
func testBatch(n int) *Batch {
	b := &Batch{Cursor: uint64(n), Meta: map[string][]byte{"gen": []byte("7")}}
	for i := range n {
		m := Mutation{Op: OpPut, Key: fmt.Appendf(nil, "k%05d", i), Value: bytes.Repeat([]byte{byte(i)}, i%8192), Revision: uint64(i)}
		if i%10 == 0 {
			m = Mutation{Op: OpDelete, Key: m.Key}
		}
		b.Mutations = append(b.Mutations, m)
	}
	return b
}

func checkBatch(t *testing.T, b, want *Batch) {
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

// TestCutStreamAppliesNothing ends a batch stream before its last chunk:
// the store must not see any of it.
func TestCutStreamAppliesNothing(t *testing.T) {
	rec := &batchRecorder{}
	_, rpc := opened(t, newServer(rec))
	ctx := context.Background()
	stream, err := rpc.ApplyStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunk := &storepb.ApplyRequest{Mutations: []*storepb.Mutation{{Op: storepb.Op_OP_PUT, Key: []byte("k"), Value: []byte("v")}}}
	if err := stream.Send(chunk); err != nil {
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

// TestSentinelsCrossTheBoundary checks the errors the host branches on.
func TestSentinelsCrossTheBoundary(t *testing.T) {
	c, _ := serveOnSocket(t, &batchRecorder{})
	ctx := context.Background()
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get before Open = %v; want ErrClosed", err)
	}
	if _, err := c.Open(ctx, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an absent key = %v; want ErrNotFound", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, &Batch{Cursor: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close = %v; want ErrClosed", err)
	}
}
