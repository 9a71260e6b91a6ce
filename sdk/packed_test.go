package sdk

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/slipstreamkv/slipstream/sdk/internal/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// olderPlugin is a server of an SDK before packed mutations: it reports
// wire 0, and its Apply would lose packed mutations, as such a server's
// decoder skips a field it does not know.
type olderPlugin struct{ *server }

func (o olderPlugin) Info(ctx context.Context, req *storepb.InfoRequest) (*storepb.InfoResponse, error) {
	resp, err := o.server.Info(ctx, req)
	if err == nil {
		resp.Wire = 0
	}
	return resp, err
}

func (o olderPlugin) Apply(ctx context.Context, req *storepb.ApplyRequest) (*storepb.ApplyResponse, error) {
	req.Packed = nil
	return o.server.Apply(ctx, req)
}

// TestOlderPluginGetsOneMessagePerMutation checks that the host sends a
// plugin reporting wire 0 the mutations it can read.
func TestOlderPluginGetsOneMessagePerMutation(t *testing.T) {
	rec := &batchRecorder{}
	c, _ := opened(t, olderPlugin{newServer(rec)})
	if c.packed {
		t.Fatal("the client packs for a plugin that reported wire 0")
	}
	applyOne(t, c, rec, testBatch(10))
}

// TestMalformedPackedAppliesNothing sends packed runs whose fields disagree:
// each is refused as InvalidArgument and the store sees none of it.
func TestMalformedPackedAppliesNothing(t *testing.T) {
	good := func() *storepb.Packed { return pack(testBatch(3).Mutations) }
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
	_, rpc := opened(t, newServer(rec))
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

// TestPackedSlicesDoNotOverlap appends to every key and value a store got
// from a packed run: none may write over its neighbour in the shared data.
func TestPackedSlicesDoNotOverlap(t *testing.T) {
	want := testBatch(50).Mutations
	got, err := appendPacked(nil, pack(want))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].Key = append(got[i].Key, '!')
		got[i].Value = append(got[i].Value, '!')
	}
	for i := range got {
		k, v := got[i].Key, got[i].Value
		if !bytes.Equal(k[:len(k)-1], want[i].Key) || !bytes.Equal(v[:len(v)-1], want[i].Value) {
			t.Fatalf("mutation %d changed under appends to the others: key %q", i, k)
		}
	}
}

// recordingServer keeps every ApplyRequest a client sends.
func recordingServer(reqs *[]*storepb.ApplyRequest, mu *sync.Mutex) grpc.ServerOption {
	return grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*storepb.ApplyRequest); ok {
			mu.Lock()
			*reqs = append(*reqs, r)
			mu.Unlock()
		}
		return next(ctx, req)
	})
}

// TestClientPacksForThisSDK checks what goes on the wire to a plugin of
// this SDK: one packed run, no message per mutation.
func TestClientPacksForThisSDK(t *testing.T) {
	var (
		reqs []*storepb.ApplyRequest
		mu   sync.Mutex
	)
	c, _ := serveServer(t, newServer(&batchRecorder{}), recordingServer(&reqs, &mu))
	ctx := context.Background()
	if _, err := c.Open(ctx, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, testBatch(10)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) != 1 || len(reqs[0].GetMutations()) != 0 || len(reqs[0].GetPacked().GetOps()) != 10 {
		t.Fatalf("the wire carried %d requests; want one with 10 packed mutations and no others", len(reqs))
	}
}
