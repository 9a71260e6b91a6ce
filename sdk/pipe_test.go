package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/slipstreamkv/slipstream/sdk/internal/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// failingRecorder is a batchRecorder whose Apply fails for one cursor.
type failingRecorder struct {
	batchRecorder
	failAt uint64
}

func (r *failingRecorder) Apply(ctx context.Context, b *Batch) error {
	if b.Cursor == r.failAt {
		return fmt.Errorf("disk full at cursor %d", b.Cursor)
	}
	return r.batchRecorder.Apply(ctx, b)
}

// pipeBatches are four batches, the third several chunks long.
func pipeBatches() []*Batch {
	var bs []*Batch
	for i, n := range []int{10, 1, 5000, 3} {
		b := testBatch(n)
		b.Cursor = uint64(i + 1)
		bs = append(bs, b)
	}
	return bs
}

// openPipe is a pipe to s, served on a socket and open.
func openPipe(t *testing.T, s Store) *Pipe {
	t.Helper()
	c, _ := opened(t, newServer(s))
	p, err := c.pipe(context.Background())
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
	_, rpc := opened(t, newServer(rec))
	stream, err := rpc.ApplyPipe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	whole := &storepb.ApplyRequest{Packed: pack(testBatch(3).Mutations), Cursor: 7, Last: true}
	cut := &storepb.ApplyRequest{Packed: pack(testBatch(3).Mutations)}
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

// TestOlderPluginHasNoPipe: a plugin reporting wire 0 gets no pipe, and
// the host falls back to Apply.
func TestOlderPluginHasNoPipe(t *testing.T) {
	c, _ := serveServer(t, olderPlugin{newServer(&batchRecorder{})})
	if _, err := c.pipe(context.Background()); !errors.Is(err, ErrNoPipe) {
		t.Fatalf("pipe to an older plugin = %v; want ErrNoPipe", err)
	}
}
