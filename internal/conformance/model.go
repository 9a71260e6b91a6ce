package conformance

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/slipstreamkv/slipstream/sdk"
)

// model is the contract's meaning of a fold: what a store must hold after a
// sequence of committed batches.
type model struct {
	cursor uint64
	meta   map[string][]byte
	data   map[string]sdk.Entry
	// loading: a bulk load was begun and not ended (sdk.State.Loading).
	loading bool
	// since holds, during a load, the states a crash may leave the store
	// in: the one BeginLoad committed and the one after each batch applied
	// since, oldest first (sdk.Loader: a load's batches need not outlive a
	// crash until EndLoad, but they are lost newest first, each whole).
	since []*model
}

func newModel() *model {
	return &model{meta: map[string][]byte{}, data: map[string]sdk.Entry{}}
}

func (m *model) apply(b *sdk.Batch) {
	for _, mu := range b.Mutations {
		switch mu.Op {
		case sdk.OpPut:
			m.data[string(mu.Key)] = sdk.Entry{Key: bytes.Clone(mu.Key), Value: bytes.Clone(mu.Value), Revision: mu.Revision}
		case sdk.OpDelete:
			delete(m.data, string(mu.Key))
		}
	}
	m.cursor = b.Cursor
	for k, v := range b.Meta {
		m.meta[k] = bytes.Clone(v)
	}
	if m.loading {
		m.since = append(m.since, m.clone())
	}
}

// beginLoad is what a successful BeginLoad does to the model.
func (m *model) beginLoad() {
	if m.loading {
		return
	}
	m.loading = true
	m.since = []*model{m.clone()}
}

// endLoad is what a successful EndLoad does to the model.
func (m *model) endLoad() {
	m.loading, m.since = false, nil
}

// clone copies m, without since.
func (m *model) clone() *model {
	return &model{cursor: m.cursor, meta: maps.Clone(m.meta), data: maps.Clone(m.data), loading: m.loading}
}

// crashStates are the states a crash may leave the store in, newest first:
// m itself, or during a load any state since BeginLoad.
func (m *model) crashStates() []*model {
	if !m.loading {
		return []*model{m}
	}
	out := make([]*model, 0, len(m.since))
	for i := len(m.since) - 1; i >= 0; i-- {
		st := m.since[i].clone()
		st.since = slices.Clone(m.since[:i+1])
		out = append(out, st)
	}
	return out
}

// inRange is the contract's meaning of sdk.Range for one key, without Limit.
func inRange(r sdk.Range, key []byte) bool {
	return bytes.HasPrefix(key, r.Prefix) &&
		(len(r.Start) == 0 || bytes.Compare(key, r.Start) >= 0) &&
		(len(r.End) == 0 || bytes.Compare(key, r.End) < 0) &&
		(len(r.After) == 0 || bytes.Compare(key, r.After) > 0)
}

// scan is what Scan(r) must return.
func (m *model) scan(r sdk.Range) []sdk.Entry {
	var out []sdk.Entry
	for _, k := range slices.Sorted(maps.Keys(m.data)) {
		if !inRange(r, []byte(k)) {
			continue
		}
		if r.Limit > 0 && len(out) == r.Limit {
			break
		}
		out = append(out, m.data[k])
	}
	return out
}

// stats is what Stats must report for Keys and Bytes.
func (m *model) stats() (keys, size uint64) {
	for _, e := range m.data {
		keys++
		size += uint64(len(e.Key) + len(e.Value))
	}
	return keys, size
}

// diffEntries describes the first difference between the entries a store
// returned and the ones it should have, or returns "". keysOnly accepts an
// empty value in got.
func diffEntries(got, want []sdk.Entry, keysOnly bool) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("%d entries, want %d: missing %s (and %d more)", len(got), len(want), show(want[i].Key), len(want)-i-1)
		case i >= len(want):
			return fmt.Sprintf("%d entries, want %d: unexpected %s at position %d", len(got), len(want), show(got[i].Key), i)
		}
		g, w := got[i], want[i]
		if !bytes.Equal(g.Key, w.Key) {
			return fmt.Sprintf("entry %d is key %s, want %s", i, show(g.Key), show(w.Key))
		}
		if g.Revision != w.Revision {
			return fmt.Sprintf("key %s has revision %d, want %d", show(g.Key), g.Revision, w.Revision)
		}
		if keysOnly && len(g.Value) == 0 {
			continue
		}
		if !bytes.Equal(g.Value, w.Value) {
			return fmt.Sprintf("key %s has value %s, want %s", show(g.Key), show(g.Value), show(w.Value))
		}
	}
	return ""
}

// diffState describes how the state a store opened with differs from m's.
func diffState(got sdk.State, m *model) string {
	var diffs []string
	if got.Cursor != m.cursor {
		diffs = append(diffs, fmt.Sprintf("cursor %d, want %d", got.Cursor, m.cursor))
	}
	if got.Loading != m.loading {
		diffs = append(diffs, fmt.Sprintf("Loading %v, want %v", got.Loading, m.loading))
	}
	for _, k := range slices.Sorted(maps.Keys(m.meta)) {
		v, ok := got.Meta[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("metadata %q is missing, want %s", k, show(m.meta[k])))
		case !bytes.Equal(v, m.meta[k]):
			diffs = append(diffs, fmt.Sprintf("metadata %q is %s, want %s", k, show(v), show(m.meta[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got.Meta)) {
		if _, ok := m.meta[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected metadata %q = %s", k, show(got.Meta[k])))
		}
	}
	return strings.Join(diffs, "; ")
}

// expectState fails the case unless the store opened with m's cursor and
// metadata.
func (h *harness) expectState(s *store, m *model, when string) {
	h.rep.Helper()
	if d := diffState(s.state, m); d != "" {
		h.Fatalf("%s: Open reported %s", when, d)
	}
}

// expectScan fails the case unless a full Scan returns exactly m's entries
// and Stats agrees.
func (h *harness) expectScan(s *store, m *model, when string) {
	h.rep.Helper()
	if d := diffEntries(s.scan(sdk.Range{}), m.scan(sdk.Range{}), false); d != "" {
		h.Fatalf("%s: full Scan: %s", when, d)
	}
	keys, size := m.stats()
	if st := s.stats(); st.Keys != keys || st.Bytes != size {
		h.Fatalf("%s: Stats reports %d keys, %d bytes; want %d keys, %d bytes", when, st.Keys, st.Bytes, keys, size)
	}
}

// expectData is expectScan plus a Get of every key.
func (h *harness) expectData(s *store, m *model, when string) {
	h.rep.Helper()
	h.expectScan(s, m, when)
	for _, w := range m.scan(sdk.Range{}) {
		e, ok := s.get(w.Key)
		if !ok {
			h.Fatalf("%s: Get(%s) = sdk.ErrNotFound; Scan returns the key", when, show(w.Key))
		}
		if d := diffEntries([]sdk.Entry{e}, []sdk.Entry{w}, false); d != "" {
			h.Fatalf("%s: Get: %s", when, d)
		}
	}
}

// expectAll is expectState and expectData.
func (h *harness) expectAll(s *store, m *model, when string) {
	h.rep.Helper()
	h.expectState(s, m, when)
	h.expectData(s, m, when)
}

// Batch building helpers, for readable cases.

func put(key, value string, rev uint64) sdk.Mutation {
	return sdk.Mutation{Op: sdk.OpPut, Key: []byte(key), Value: []byte(value), Revision: rev}
}

func del(key string) sdk.Mutation {
	return sdk.Mutation{Op: sdk.OpDelete, Key: []byte(key)}
}

func batch(cursor uint64, ms ...sdk.Mutation) *sdk.Batch {
	return &sdk.Batch{Mutations: ms, Cursor: cursor}
}
