package fold

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestHandoffWakesTheReader: a reader told the applier is busy is woken
// when it becomes free, whatever the interleaving; so is one told it is
// free that still could not send (a batch was queued for the applier);
// one that sent its batch needs no wake.
func TestHandoffWakesTheReader(t *testing.T) {
	var woken atomic.Int64
	h := &handoff{wake: func() { woken.Add(1) }}
	h.busy()
	if h.ready() {
		t.Fatal("ready while the applier is busy")
	}
	h.free()
	if woken.Load() != 1 {
		t.Fatalf("%d wakes after the applier became free for a waiting reader, want 1", woken.Load())
	}
	if !h.ready() {
		t.Fatal("not ready while the applier waits")
	}
	// The reader could not send (another batch was queued): the applier's
	// next free must wake it, as no poll will.
	h.busy()
	h.free()
	if woken.Load() != 2 {
		t.Fatalf("%d wakes after the applier became free for a reader that held its batch back, want 2", woken.Load())
	}
	if !h.ready() {
		t.Fatal("not ready while the applier waits")
	}
	h.took()
	h.busy()
	h.free()
	if woken.Load() != 2 {
		t.Fatalf("%d wakes: the applier woke a reader that had sent its batch", woken.Load())
	}

	// Concurrently: every round the reader finds the applier not ready is
	// followed by a wake once the applier is free.
	for range 2000 {
		woken.Store(0)
		h := &handoff{wake: func() { woken.Add(1) }}
		h.busy()
		var wg sync.WaitGroup
		var ready bool
		wg.Go(func() { ready = h.ready() })
		wg.Go(func() { h.free() })
		wg.Wait()
		if !ready && woken.Load() == 0 {
			t.Fatal("the reader was told to wait and never woken: a lost wake-up")
		}
	}
}
