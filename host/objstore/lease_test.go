package objstore

import (
	"errors"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// One holder at a time; the server ends a lease at its TTL; Release ends
// only the caller's own lease.
func TestLease(t *testing.T) {
	url := server(t)
	a, _ := node(t, url, "snaps", Options{})
	b, _ := node(t, url, "snaps", Options{})
	ctx := ctxT(t)
	const ttl = time.Second

	if _, _, err := a.TryLease(ctx, "orders", "a", 500*time.Millisecond); err == nil {
		t.Fatal("TryLease took a TTL under the server's 1s minimum")
	}
	if _, _, err := a.TryLease(ctx, "orders", "", ttl); err == nil {
		t.Fatal("TryLease took no holder")
	}
	la, ok, err := a.TryLease(ctx, "orders", "a", ttl)
	if err != nil || !ok || !la.Held() || la.Holder != "a" {
		t.Fatalf("first TryLease: %+v, %v, %v", la, ok, err)
	}
	other, ok, err := b.TryLease(ctx, "orders", "b", ttl)
	if err != nil || ok {
		t.Fatalf("second TryLease while the first holds: %v, %v", ok, err)
	}
	if other.Holder != "a" || other.Held() {
		t.Fatalf("second TryLease reports %+v, want holder a, not held", other)
	}
	// Another series has its own lease.
	if _, ok, err := b.TryLease(ctx, "users", "b", ttl); err != nil || !ok {
		t.Fatalf("TryLease of another series: %v, %v", ok, err)
	}

	// a dies without releasing: the server ends its lease.
	var lb Lease
	start := time.Now()
	testenv.Eventually(t, 10*time.Second, "the lease to expire", func() bool {
		var err error
		lb, ok, err = b.TryLease(ctx, "orders", "b", 2*ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	if took := time.Since(start); took < ttl/2 {
		t.Fatalf("b took the lease %v after a did, before its TTL", took)
	}
	if lb.Holder != "b" || !lb.Held() || la.Held() {
		t.Fatalf("b's lease %+v held: %v; a's held: %v", lb, lb.Held(), la.Held())
	}
	// a's late release must leave b's lease alone.
	if err := la.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("release of an expired lease: %v, want ErrLeaseLost", err)
	}
	if got, ok, err := a.TryLease(ctx, "orders", "c", ttl); err != nil || ok || got.Holder != "b" {
		t.Fatalf("TryLease after a's late release: %+v, %v, %v; b still holds it", got, ok, err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	lc, ok, err := a.TryLease(ctx, "orders", "c", ttl)
	if err != nil || !ok || lc.Holder != "c" {
		t.Fatalf("TryLease after the release: %+v, %v, %v", lc, ok, err)
	}
	if err := (Lease{}).Release(ctx); err == nil {
		t.Fatal("released a lease that was never taken")
	}
}
