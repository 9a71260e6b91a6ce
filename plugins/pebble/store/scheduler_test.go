package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/slipstreamkv/slipstream/sdk"
)

// fakeDB is a database with a fixed limit and a number of compactions
// waiting, which it runs until they are released.
type fakeDB struct {
	mu      sync.Mutex
	allowed int
	waiting int
	handles []pebble.CompactionGrantHandle
}

func (d *fakeDB) GetAllowedWithoutPermission() int { return d.allowed }

func (d *fakeDB) GetWaitingCompaction() (bool, pebble.WaitingCompaction) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting > 0, pebble.WaitingCompaction{}
}

func (d *fakeDB) Schedule(h pebble.CompactionGrantHandle) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.waiting == 0 {
		return false
	}
	d.waiting--
	d.handles = append(d.handles, h)
	return true
}

func (d *fakeDB) scheduled() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.handles)
}

// eventually polls cond for up to ten seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSchedulerHoldsCompactionsUntilStart checks that nothing is granted
// before start, that grants then stop at the database's limit, and that a
// compaction's end lets the next waiting one run.
func TestSchedulerHoldsCompactionsUntilStart(t *testing.T) {
	db := &fakeDB{allowed: 2, waiting: 3}
	s := newScheduler()
	s.Register(1, db)
	defer s.Unregister()
	if ok, _ := s.TrySchedule(); ok {
		t.Fatal("TrySchedule before start granted a compaction")
	}
	s.wake()
	time.Sleep(150 * time.Millisecond) // past a tick of the granter: still nothing
	if n := db.scheduled(); n != 0 {
		t.Fatalf("%d compactions scheduled before start", n)
	}
	s.start()
	eventually(t, "two compactions scheduled after start", func() bool { return db.scheduled() == 2 })
	if ok, _ := s.TrySchedule(); ok {
		t.Fatal("TrySchedule granted a third compaction above the limit of 2")
	}
	db.mu.Lock()
	first := db.handles[0]
	db.mu.Unlock()
	first.Done()
	eventually(t, "the third compaction scheduled once the first ended", func() bool { return db.scheduled() == 3 })
}

// TestCompactionsRunAfterOpen checks that the store's scheduler lets pebble
// compact: L0 tables beyond its threshold are compacted down.
func TestCompactionsRunAfterOpen(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), `{"sync": false}`)
	defer s.Close(ctx)
	for i := range 12 {
		b := &sdk.Batch{Cursor: uint64(i + 1)}
		for j := range 100 {
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "k%05d", j*12+i), Value: []byte("v"), Revision: uint64(i + 1)})
		}
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "a compaction of the flushed tables", func() bool { return s.db.Metrics().Compact.Count > 0 })
}

// TestSchedulerStartsWithinItsGrace: compactions held for a grace start
// when it runs out, without a call to start.
func TestSchedulerStartsWithinItsGrace(t *testing.T) {
	db := &fakeDB{allowed: 1, waiting: 1}
	s := newScheduler()
	s.Register(1, db)
	defer s.Unregister()
	s.startWithin(300 * time.Millisecond)
	time.Sleep(150 * time.Millisecond) // past a tick of the granter
	if n := db.scheduled(); n != 0 || s.isStarted() {
		t.Fatalf("%d compactions scheduled, started %v, within the grace", n, s.isStarted())
	}
	eventually(t, "a compaction scheduled once the grace ran out", func() bool { return db.scheduled() == 1 })
}

// TestCompactionsWaitForTheFirstCommit: after Open the compactions wait
// for the store's first commit, a restarted fold's catch-up, and start with
// it.
func TestCompactionsWaitForTheFirstCommit(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), `{"sync": false}`)
	defer s.Close(ctx)
	if s.sched.isStarted() {
		t.Fatal("compactions started at Open, before any commit")
	}
	b := &sdk.Batch{Cursor: 1, Mutations: []sdk.Mutation{{Op: sdk.OpPut, Key: []byte("k"), Value: []byte("v"), Revision: 1}}}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !s.sched.isStarted() {
		t.Fatal("compactions still held after the first commit")
	}
}

// isStarted reports whether compactions may run.
func (s *scheduler) isStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}
