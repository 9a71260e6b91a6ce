package fold_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// panicky is a pass-through transform that panics while armed.
type panicky struct{ armed atomic.Bool }

func (p *panicky) Digest() string { return "" }
func (p *panicky) Apply(_ context.Context, in []sdk.Mutation) ([]sdk.Mutation, error) {
	if p.armed.Load() {
		panic("transform blew up")
	}
	return in, nil
}

// panickyStore is a store whose Apply panics while armed. It offers no
// apply pipe, so every batch goes through the applier's own commit.
type panickyStore struct {
	fold.Handle
	armed *atomic.Bool
}

func (s panickyStore) Apply(ctx context.Context, b *sdk.Batch) error {
	if s.armed.Load() {
		panic("store blew up")
	}
	return s.Handle.Apply(ctx, b)
}

// TestPanicStallsOnlyItsFold panics in a fold's session (its transform)
// and in its applier (its store). Each time the fold stalls with the panic
// as its reason while another fold of the same process goes on folding;
// once the panics stop, the fold catches up with nothing lost.
func TestPanicStallsOnlyItsFold(t *testing.T) {
	tests := []struct {
		name  string
		where string
		arm   func(h *harness) *atomic.Bool
	}{
		{"transform", "session", func(h *harness) *atomic.Bool {
			p := &panicky{}
			h.cfg.Transform = p
			return &p.armed
		}},
		{"store apply", "applier", func(h *harness) *atomic.Bool {
			armed := &atomic.Bool{}
			h.wrapLaunch(func(p *pluginhost.Plugin) fold.Handle { return panickyStore{Handle: p, armed: armed} })
			return armed
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testenv.NATS(t)
			_, js := testenv.JetStream(t, srv.ClientURL())
			kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
			ctx := context.Background()

			bad := newHarness(t, js, "cfg", nil, t.TempDir())
			bad.cfg.RetryMin, bad.cfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
			armed := tt.arm(bad)
			good := newHarness(t, js, "cfg", nil, t.TempDir())
			bad.start()
			good.start()
			if _, err := kv.Put(ctx, "a", []byte("1")); err != nil {
				t.Fatal(err)
			}
			_, last := lastSeq(t, js, "cfg")
			bad.waitSynced(last)
			good.waitSynced(last)

			armed.Store(true)
			for _, k := range []string{"b", "c"} {
				if _, err := kv.Put(ctx, k, []byte("2")); err != nil {
					t.Fatal(err)
				}
			}
			_, last = lastSeq(t, js, "cfg")
			want := "internal error in the fold's " + tt.where + ": panic: "
			var st fold.Status
			testenv.Eventually(t, 30*time.Second, "the fold stalled with the panic as its reason", func() bool {
				st = bad.f.Status(ctx)
				return st.State == fold.StateStalled && strings.Contains(st.Reason, want)
			})
			if st.Ready || st.Cursor >= last {
				t.Errorf("a fold that panicked reports ready %v at cursor %d (stream at %d)", st.Ready, st.Cursor, last)
			}
			good.waitSynced(last)
			diff(t, good.contents(), testenv.Contents(t, kv, ""))

			armed.Store(false)
			bad.waitSynced(last)
			diff(t, bad.contents(), testenv.Contents(t, kv, ""))
		})
	}
}

// TestPanicErrorSaysWhere checks the reason a caught panic leaves.
func TestPanicErrorSaysWhere(t *testing.T) {
	err := error(&fold.PanicError{Where: "applier", Value: "boom"})
	var pe *fold.PanicError
	if !errors.As(err, &pe) || err.Error() != "internal error in the fold's applier: panic: boom (stack in the log)" {
		t.Fatalf("got %q", err)
	}
}
