package store

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// scheduler grants pebble's compactions up to the database's own limit
// (DBForCompaction.GetAllowedWithoutPermission), as pebble's default
// scheduler does, but none before start: pebble.Open, once it has flushed
// the memtables its log replay filled, waits for every compaction under
// way before it returns (it lists obsolete files), and the first flush
// after a bulk load schedules a long one. A restart of a freshly loaded
// store spent most of its Open waiting for it; with the compactions held
// until Open has returned they run while the fold already follows.
//
// The store starts them at its first commit after Open, or catchUpGrace
// after Open, whichever comes first: a restarted fold's first batch is its
// catch-up, which the fold is not ready before, and the compactions a
// previous run left owed took the CPU and the disk from it (in a profile of
// a 1M-key resume, 200 ms of the plugin's 410 ms were compactions running
// beside that batch).
type scheduler struct {
	mu           sync.Mutex
	db           pebble.DBForCompaction
	started      bool // start was called, or holdLimit passed: grants may begin
	registered   bool
	unregistered bool
	running      int
	created      time.Time

	timer *time.Timer // starts the compactions when the grace runs out

	poke chan struct{} // wakes grant up: a compaction ended, or start
	stop chan struct{} // closed by Unregister
	done chan struct{} // closed when grant returns
}

var _ pebble.CompactionScheduler = (*scheduler)(nil)

// holdLimit bounds how long compactions are held if start never comes
// while Open runs: a format migration inside pebble.Open that rewrites
// tables (none between the format this store is created at and pebble's
// newest) waits for compactions, and holding them for good would hang it.
const holdLimit = 5 * time.Second

func newScheduler() *scheduler {
	return &scheduler{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), created: time.Now()}
}

// catchUpGrace bounds how long after Open the compactions wait for the
// store's first commit (startWithin).
const catchUpGrace = time.Second

// start lets compactions run.
func (s *scheduler) start() {
	s.mu.Lock()
	was := s.started
	s.started = true
	s.mu.Unlock()
	if !was {
		s.wake()
	}
}

// startWithin starts the compactions d from now, unless start comes first.
func (s *scheduler) startWithin(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started && s.timer == nil {
		s.timer = time.AfterFunc(d, s.start)
	}
}

func (s *scheduler) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Register is called by pebble.Open.
func (s *scheduler) Register(_ int, db pebble.DBForCompaction) {
	s.db = db
	s.mu.Lock()
	s.registered = true
	s.mu.Unlock()
	go s.grant()
}

// abandon stops the granter of a database that pebble.Open failed to open
// after registering it: no Close will unregister it.
func (s *scheduler) abandon() {
	s.mu.Lock()
	live := s.registered && !s.unregistered
	s.mu.Unlock()
	if live {
		s.Unregister()
	}
}

// Unregister is called by DB.Close; no call into the database follows its
// return.
func (s *scheduler) Unregister() {
	s.mu.Lock()
	s.unregistered = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	close(s.stop)
	<-s.done
}

// TrySchedule is pebble asking to run a compaction now.
func (s *scheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	if !s.reserve() {
		return false, nil
	}
	return true, s
}

// UpdateGetAllowedWithoutPermission is pebble saying its limit may have
// risen.
func (s *scheduler) UpdateGetAllowedWithoutPermission() { s.wake() }

// The grant handle: only Done matters here.
func (s *scheduler) Started()                                          {}
func (s *scheduler) MeasureCPU(pebble.CompactionGoroutineKind)         {}
func (s *scheduler) CumulativeStats(pebble.CompactionGrantHandleStats) {}

// Done is a granted compaction's end.
func (s *scheduler) Done() {
	s.release()
	s.wake()
}

// grant offers the database the compactions it waits for, whenever one
// ends, start or pebble pokes it, and every 100 ms (pebble's limit may
// rise with its compaction debt without a poke).
func (s *scheduler) grant() {
	defer close(s.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.poke:
		case <-tick.C:
		}
		for s.reserve() {
			waiting, _ := s.db.GetWaitingCompaction()
			if !waiting || !s.db.Schedule(s) {
				s.release()
				break
			}
		}
	}
}

// reserve counts one more compaction running, if one may start now.
func (s *scheduler) reserve() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started && time.Since(s.created) > holdLimit {
		s.started = true
	}
	if !s.started || s.unregistered || s.running >= s.db.GetAllowedWithoutPermission() {
		return false
	}
	s.running++
	return true
}

// release undoes reserve.
func (s *scheduler) release() {
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
}
