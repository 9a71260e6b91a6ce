package fold

import (
	"fmt"
	"slices"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/testenv"
	"pgregory.net/rapid"
)

// cacheModel runs the read cache's decisions against a store in model
// time: commits reach the store first and the cache after (as a plugin
// applies a batch before the fold records it, piped batches further
// ahead), while readers take fill tickets, read the store at any moment in
// between, and hand their answers back. The property: a read that hits the
// cache never returns a key older than its state at the cursor the reader
// saw before looking (what the API reports with the answer).
type cacheModel struct {
	c       *readCache
	history map[string][]cached // per key, every state in revision order
	rev     uint64              // the store's newest revision
	cursor  uint64              // the cursor the cache has taken in
	pending []commitOp          // applied to the store, not yet to the cache
	readers []*modelReader
}

type commitOp struct {
	key string
	v   cached
}

type modelReader struct {
	key    string
	t      *fill
	answer *cached // set once it has read the store
}

var modelKeys = []string{"a", "b", "c"}

func newCacheModel(maxBytes int64, keepVoided bool) *cacheModel {
	c := newReadCache(maxBytes)
	c.keepVoided = keepVoided
	return &cacheModel{c: c, history: map[string][]cached{}}
}

// stateAt is key's state as of cursor: its last change at or below it.
func (m *cacheModel) stateAt(key string, cursor uint64) cached {
	st := cached{}
	for _, h := range m.history[key] {
		if h.revision > cursor {
			break
		}
		st = h
	}
	return st
}

func (m *cacheModel) run(t *rapid.T) {
	t.Repeat(map[string]func(*rapid.T){
		"apply": func(t *rapid.T) { // the store commits one change
			m.rev++
			v := cached{revision: m.rev}
			if rapid.Bool().Draw(t, "put") {
				v.found, v.value = true, fmt.Appendf(nil, "v%d", m.rev)
			}
			k := rapid.SampledFrom(modelKeys).Draw(t, "key")
			m.history[k] = append(m.history[k], v)
			m.pending = append(m.pending, commitOp{k, v})
		},
		"record": func(t *rapid.T) { // the fold takes the oldest commit in
			if len(m.pending) == 0 {
				t.Skip("nothing applied")
			}
			op := m.pending[0]
			m.pending = m.pending[1:]
			m.c.changed([]byte(op.key), op.v)
			m.cursor = op.v.revision
		},
		"lookup": func(t *rapid.T) { // a reader looks a key up
			k := rapid.SampledFrom(modelKeys).Draw(t, "key")
			at := m.cursor
			if got, ok := m.c.get(k); ok {
				want := m.stateAt(k, at)
				if got.revision < want.revision {
					t.Fatalf("cache hit on %s at cursor %d: revision %d, but the key was at revision %d by then", k, at, got.revision, want.revision)
				}
				return
			}
			m.readers = append(m.readers, &modelReader{key: k, t: m.c.begin(k)})
		},
		"storeRead": func(t *rapid.T) { // a reader's Get reaches the store
			var waiting []*modelReader
			for _, r := range m.readers {
				if r.answer == nil {
					waiting = append(waiting, r)
				}
			}
			if len(waiting) == 0 {
				t.Skip("no reader waits for the store")
			}
			r := rapid.SampledFrom(waiting).Draw(t, "reader")
			st := m.stateAt(r.key, m.rev)
			r.answer = &st
		},
		"fill": func(t *rapid.T) { // a reader hands its answer back
			i := slices.IndexFunc(m.readers, func(r *modelReader) bool { return r.answer != nil })
			if i < 0 {
				t.Skip("no answer to hand back")
			}
			r := m.readers[i]
			m.readers = slices.Delete(m.readers, i, i+1)
			m.c.end(r.key, r.t, *r.answer)
		},
		"": func(t *rapid.T) {
			if m.c.bytes > m.c.max {
				t.Fatalf("the cache holds %d bytes, over its %d", m.c.bytes, m.c.max)
			}
			var sum int64
			for _, k := range m.c.lru.Keys() {
				v, _ := m.c.lru.Peek(k)
				sum += cost(k, v)
			}
			if sum != m.c.bytes {
				t.Fatalf("the cache counts %d bytes, its entries hold %d", m.c.bytes, sum)
			}
		},
	})
}

// TestReadCacheModel: the cache never answers older than the cursor a
// reader saw, with a cache large enough for every key and one that evicts.
func TestReadCacheModel(t *testing.T) {
	for _, size := range []int64{1 << 20, 2 * (entryOverhead + 8)} {
		t.Run(fmt.Sprintf("%dB", size), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) { newCacheModel(size, false).run(t) })
		})
	}
}

// TestReadCacheModelCatchesKeptFills: a cache that keeps the answer of a
// fill a commit voided serves a value older than the reader's cursor, and
// the model says so.
func TestReadCacheModelCatchesKeptFills(t *testing.T) {
	if !testenv.RapidFails(2000, func(t *rapid.T) { newCacheModel(1<<20, true).run(t) }) {
		t.Fatal("the model did not catch a cache that keeps voided fills")
	}
}
