package watch

import (
	"fmt"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/testenv"
	"pgregory.net/rapid"
)

// streamModel is a KV stream with History 1 and head eviction, and a
// filtered consumer that scans it in order, skipping what is gone: the
// behaviour of nats-server the floor guard must defend against.
type streamModel struct {
	msgs    map[uint64]msg // retained messages
	next    uint64         // next sequence to publish
	pos     uint64         // the consumer's next sequence to scan
	buffer  []uint64       // scanned, in scope, not yet taken by the fold
	fold    map[string]string
	want    map[string]string // the fold of every in-scope message ever published
	deliv   uint64
	guard   uint64
	expired bool
}

type msg struct {
	key   string
	value string // "" is a delete marker
	scope bool
}

func newStreamModel() *streamModel {
	return &streamModel{msgs: map[uint64]msg{}, next: 1, pos: 1, fold: map[string]string{}, want: map[string]string{}}
}

func (m *streamModel) first() uint64 {
	f := m.next
	for s := range m.msgs {
		f = min(f, s)
	}
	return f
}

func (m *streamModel) publish(key, value string) {
	scope := key[0] == 'r'
	for s, x := range m.msgs { // History 1: the previous value goes
		if x.key == key {
			delete(m.msgs, s)
		}
	}
	m.msgs[m.next] = msg{key: key, value: value, scope: scope}
	if scope {
		if value == "" {
			delete(m.want, key)
		} else {
			m.want[key] = value
		}
	}
	m.next++
}

func (m *streamModel) evict() {
	if len(m.msgs) > 0 {
		delete(m.msgs, m.first())
	}
}

// scan moves the consumer to the next retained message in scope, if any.
func (m *streamModel) scan() bool {
	for s := m.pos; s < m.next; s++ {
		if x, ok := m.msgs[s]; ok && x.scope {
			m.buffer = append(m.buffer, s)
			m.pos = s + 1
			return true
		}
	}
	m.pos = m.next
	return false
}

// take hands the oldest scanned message to the fold. The message may have
// been removed from the stream since it was scanned: the client holds it.
func (m *streamModel) take(held map[uint64]msg) {
	s := m.buffer[0]
	m.buffer = m.buffer[1:]
	x := held[s]
	if x.value == "" {
		delete(m.fold, x.key)
	} else {
		m.fold[x.key] = x.value
	}
	m.deliv = max(m.deliv, s)
}

func (m *streamModel) caughtUp() bool {
	if len(m.buffer) > 0 {
		return false
	}
	for s, x := range m.msgs {
		if s >= m.pos && x.scope {
			return false
		}
	}
	return true
}

type advanceFunc func(guard, delivered uint64, caughtUp bool, lastBefore, firstAfter uint64) (uint64, error)

// checkGuard runs random interleavings of publishes, evictions, scans, takes
// and checks, and requires that a fold whose guard never fired equals the
// fold of every in-scope message.
func checkGuard(t *rapid.T, advance advanceFunc) {
	m := newStreamModel()
	held := map[uint64]msg{} // what the client received, kept past eviction
	keys := []string{"r.a", "r.b", "r.c", "o.x", "o.y", "o.z"}
	publish := func() {
		k := rapid.SampledFrom(keys).Draw(t, "key")
		v := rapid.SampledFrom([]string{"", "1", "2"}).Draw(t, "value")
		m.publish(k, v)
	}
	scan := func() {
		if m.scan() {
			s := m.buffer[len(m.buffer)-1]
			held[s] = m.msgs[s]
		}
	}
	// server is what the server and other clients do meanwhile: the reader
	// itself is busy in Check, so nothing is taken.
	server := func(label string) {
		for range rapid.IntRange(0, 3).Draw(t, label) {
			switch rapid.IntRange(0, 2).Draw(t, label+" action") {
			case 0:
				publish()
			case 1:
				m.evict()
			case 2:
				scan()
			}
		}
	}
	// check is Check's three reads, with the world moving between them.
	check := func(quiet bool) {
		if m.expired {
			return
		}
		lastBefore := m.next - 1
		if !quiet {
			server("between stream and consumer info")
		}
		caughtUp := m.caughtUp()
		if !quiet {
			server("between consumer and stream info")
		}
		g, err := advance(m.guard, m.deliv, caughtUp, lastBefore, m.first())
		if err != nil {
			m.expired = true
			return
		}
		m.guard = g
	}
	steps := rapid.IntRange(1, 150).Draw(t, "steps")
	for range steps {
		switch rapid.IntRange(0, 5).Draw(t, "action") {
		case 0, 1:
			publish()
		case 2:
			m.evict()
		case 3:
			scan()
		case 4:
			if len(m.buffer) > 0 {
				m.take(held)
			}
		case 5:
			check(false)
		}
	}
	// Drain: the consumer reads to the end and the fold takes everything.
	for range m.next {
		scan()
	}
	for len(m.buffer) > 0 {
		m.take(held)
	}
	check(true) // the last check, after the drain, with the world still
	if m.expired {
		return // the fold rebuilds: correct by construction
	}
	if fmt.Sprint(m.fold) != fmt.Sprint(m.want) {
		t.Fatalf("the guard never fired, yet the fold %v differs from the bucket's history %v", m.fold, m.want)
	}
}

func TestFloorGuardModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkGuard(t, Advance) })
}

// TestFloorGuardModelCatchesMutations proves the property can fail: guards
// with a known flaw let a fold diverge, and rapid finds how.
func TestFloorGuardModelCatchesMutations(t *testing.T) {
	for name, broken := range map[string]advanceFunc{
		// Checks the first sequence against the new frontier, so catch-up
		// deliveries erase the evidence of a gap.
		"checks-new-frontier": func(guard, delivered uint64, caughtUp bool, lastBefore, firstAfter uint64) (uint64, error) {
			frontier := max(guard, delivered)
			if caughtUp {
				frontier = max(frontier, lastBefore)
			}
			if !ResumeOK(frontier, firstAfter) {
				return 0, ErrCursorExpired
			}
			return frontier, nil
		},
		// Bookmarks without being caught up.
		"bookmark-always": func(guard, delivered uint64, _ bool, lastBefore, firstAfter uint64) (uint64, error) {
			if !ResumeOK(guard, firstAfter) {
				return 0, ErrCursorExpired
			}
			return max(guard, delivered, lastBefore), nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			if !testenv.RapidFails(2000, func(t *rapid.T) { checkGuard(t, broken) }) {
				t.Fatalf("the model did not catch the %s mutation", name)
			}
		})
	}
}
