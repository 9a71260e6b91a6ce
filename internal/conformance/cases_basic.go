package conformance

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/slipstreamkv/slipstream/sdk"
)

func caseOpenEmpty(h *harness) {
	dir := filepath.Join(h.dir(), "not", "made", "yet")
	s := h.open(dir)
	m := newModel()
	h.expectAll(s, m, "new store")
	if _, ok := s.get([]byte("a")); ok {
		h.Fatalf("new store: Get(\"a\") found an entry")
	}
	s = s.reopen()
	h.expectAll(s, m, "new store after reopen")
	s.close()
}

func caseConfig(h *harness) {
	dir := h.dir()
	in := h.start()
	for _, bad := range []string{`{"slipstream_conformance_no_such_key": true}`, `{not json`} {
		if _, err := in.Open(h.ctx, dir, []byte(bad)); err == nil {
			h.Fatalf("Open with store_config %s succeeded; want an error", bad)
		}
	}
	// The instance that refused bad configs opens with a good one.
	st, err := in.Open(h.ctx, dir, h.config())
	if err != nil {
		h.Fatalf("Open with store_config %s after refused configs: %v", h.config(), err)
	}
	s := &store{instance: in, h: h, dir: dir, state: st}
	m := newModel()
	b := batch(1, put("a", "1", 1))
	s.apply(b)
	m.apply(b)
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	s.close()
}

func caseGetAbsent(h *harness) {
	s := h.open(h.dir())
	expectAbsent := func(when string, keys ...string) {
		for _, k := range keys {
			e, err := s.Get(h.ctx, []byte(k))
			if !errors.Is(err, sdk.ErrNotFound) {
				h.Fatalf("%s: Get(%q) = (%s, %v); want sdk.ErrNotFound", when, k, show(e.Value), err)
			}
		}
	}
	expectAbsent("empty store", "a", "ab")
	s.apply(batch(1, put("ab", "x", 1), put("abc", "y", 1), put("b\x00", "z", 1)))
	expectAbsent("beside stored keys", "a", "aa", "abcd", "ac", "b", "b\x00\x00")
	if e, ok := s.get([]byte("ab")); !ok || string(e.Value) != "x" {
		h.Fatalf("Get(\"ab\") = (%s, found=%v); want \"x\"", show(e.Value), ok)
	}
	s.apply(batch(2, del("ab")))
	expectAbsent("after delete", "ab")
	s.close()
}

func caseRevisions(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	var b sdk.Batch
	for i, rev := range []uint64{1, 1<<32 + 7, 1<<53 + 1, 1<<63 + 3, math.MaxUint64} {
		b.Mutations = append(b.Mutations, put(fmt.Sprintf("rev/%d", i), "v", rev))
	}
	b.Cursor = 10
	s.apply(&b)
	m.apply(&b)
	h.expectData(s, m, "after puts")
	over := batch(11, put("rev/1", "w", 11), put("rev/4", "w", 1<<40))
	s.apply(over)
	m.apply(over)
	h.expectData(s, m, "after overwrites")
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	s.close()
}

func casePersistence(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	apply := func(b *sdk.Batch) {
		s.apply(b)
		m.apply(b)
	}
	b := batch(3, put("a", "1", 1), put("b", "2", 2), put("c", "3", 3))
	b.Meta = map[string][]byte{"stream": []byte("KV_cfg@1700000000"), "gen": []byte("1")}
	apply(b)
	apply(batch(7, put("b", "22", 5), del("c"), put("d", "4", 7)))
	b = batch(9, put("e", "5", 9))
	b.Meta = map[string][]byte{"gen": []byte("2")}
	apply(b)
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	apply(batch(12, put("a", "11", 12), del("d")))
	s = s.reopen()
	h.expectAll(s, m, "after a second reopen")
	s.close()
}

func caseCursorOnlyBatch(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	steps := []struct {
		when string
		b    *sdk.Batch
	}{
		{"empty batch", batch(5)},
		{"metadata-only batch", &sdk.Batch{Cursor: 9, Meta: map[string][]byte{"scope": []byte("app.>")}}},
		{"put", batch(9, put("x", "1", 9))},
		{"delete at the same cursor", batch(9, del("x"))},
	}
	for _, st := range steps {
		s.apply(st.b)
		m.apply(st.b)
		s = s.reopen()
		h.expectAll(s, m, "after "+st.when+" and reopen")
	}
	s.close()
}

func caseMetaUpsert(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	metas := []map[string][]byte{
		{"stream": []byte("KV_a"), "digest": []byte("d1"), "scope": []byte("app.>"), "empty": {}, "a/b ü": []byte("\x00\xff")},
		{"digest": []byte("d2")},
		nil,
		{},
		{"scope": []byte("route.*.v1"), "new": []byte("n")},
	}
	for i, meta := range metas {
		b := &sdk.Batch{Cursor: uint64(i + 1), Meta: meta}
		s.apply(b)
		m.apply(b)
		s = s.reopen()
		h.expectState(s, m, fmt.Sprintf("after batch %d and reopen", i+1))
	}
	s.close()
}

func caseIdempotentReapply(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	first := batch(4, put("a", "1", 2), put("b", "2", 3), put("c", "3", 4))
	s.apply(first)
	m.apply(first)
	b := batch(8, put("a", "11", 5), del("b"), del("absent"), put("d", "4", 7), put("d", "44", 8))
	b.Meta = map[string][]byte{"gen": []byte("2")}
	s.apply(b)
	s.apply(b)
	m.apply(b)
	h.expectData(s, m, "after applying a batch twice")
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	s.apply(b)
	h.expectData(s, m, "after re-applying the batch once reopened")
	s = s.reopen()
	h.expectAll(s, m, "after a second reopen")
	s.close()
}

func caseDeletes(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	apply := func(b *sdk.Batch) {
		s.apply(b)
		m.apply(b)
	}
	apply(batch(1, put("a", "1", 1), put("b", "2", 1), put("c", "3", 1), put("d", "4", 1), put("e", "5", 1), put("f", "6", 1)))
	apply(batch(2, del("b"), del("d"), del("never"), del("a\x00")))
	h.expectData(s, m, "after deletes")
	s = s.reopen()
	h.expectAll(s, m, "after deletes and reopen")
	apply(batch(3, del("a"), del("b"), del("c"), del("e"), del("f")))
	h.expectData(s, m, "after deleting every key")
	s = s.reopen()
	h.expectAll(s, m, "after deleting every key and reopen")
	apply(batch(4, put("b", "back", 4)))
	s = s.reopen()
	h.expectAll(s, m, "after putting a deleted key back and reopen")
	s.close()
}

func caseBatchOrder(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	b := batch(1, put("k3", "old", 1))
	s.apply(b)
	m.apply(b)
	b = batch(7,
		put("k1", "v1", 2), put("k1", "v2", 3), // last put wins
		put("k2", "x", 4), del("k2"), // put then delete: absent
		del("k3"), put("k3", "new", 5), // delete then put: present
		put("k4", "a", 6), del("k4"), put("k4", "b", 7),
	)
	s.apply(b)
	m.apply(b)
	h.expectData(s, m, "after one batch touching keys several times")
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	s.close()
}

func caseEmptyValues(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	apply := func(b *sdk.Batch) {
		s.apply(b)
		m.apply(b)
	}
	apply(batch(1,
		sdk.Mutation{Op: sdk.OpPut, Key: []byte("nil"), Value: nil, Revision: 1},
		sdk.Mutation{Op: sdk.OpPut, Key: []byte("empty"), Value: []byte{}, Revision: 1},
		put("full", "x", 1),
	))
	for _, k := range []string{"nil", "empty"} {
		e, ok := s.get([]byte(k))
		if !ok {
			h.Fatalf("Get(%q) after a put of an empty value = sdk.ErrNotFound; want an empty value", k)
		}
		if len(e.Value) != 0 {
			h.Fatalf("Get(%q) = %s; want an empty value", k, show(e.Value))
		}
	}
	h.expectData(s, m, "after empty puts")
	apply(batch(2, put("full", "", 2), put("nil", "v", 2)))
	apply(batch(3, put("nil", "", 3)))
	h.expectData(s, m, "after overwrites to and from empty")
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	s.close()
}

func caseStats(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	step := func(when string, b *sdk.Batch) {
		s.apply(b)
		m.apply(b)
		h.expectScan(s, m, when)
	}
	var b sdk.Batch
	for i := range 10 {
		b.Mutations = append(b.Mutations, put(fmt.Sprintf("k%02d", i), fmt.Sprintf("%0*d", 10+i, i), 1))
	}
	b.Cursor = 1
	step("after 10 puts", &b)
	step("after overwrites", batch(2, put("k00", "", 2), put("k01", "a much longer value than before", 2), put("k02", "x", 2)))
	step("after deletes", batch(3, del("k05"), del("k06"), del("k07")))
	step("after deletes of absent keys", batch(4, del("x1"), del("k05"), del("x2")))
	mixed := batch(5, put("z", "1", 5), del("z"), del("k08"), put("k08", "8", 5), put("k09", "9", 5), put("k09", "99", 5))
	step("after a batch touching keys twice", mixed)
	step("after re-applying that batch", mixed)
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	s.close()
}

func caseUseAfterClose(h *harness) {
	dir := h.dir()
	in := h.start()
	if _, err := in.Get(h.ctx, []byte("a")); !errors.Is(err, sdk.ErrClosed) {
		h.Errorf("Get before Open = %v; want sdk.ErrClosed", err)
	}
	if err := in.Apply(h.ctx, batch(1, put("early", "x", 1))); !errors.Is(err, sdk.ErrClosed) {
		h.Errorf("Apply before Open = %v; want sdk.ErrClosed", err)
	}
	st, err := in.Open(h.ctx, dir, h.config())
	if err != nil {
		h.Fatalf("Open: %v", err)
	}
	s := &store{instance: in, h: h, dir: dir, state: st}
	m := newModel()
	b := batch(1, put("a", "1", 1))
	s.apply(b)
	m.apply(b)
	if err := s.Close(h.ctx); err != nil {
		h.Fatalf("Close: %v", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Apply", func() error { return s.Apply(h.ctx, batch(2, put("late", "x", 2))) }},
		{"Get", func() error { _, err := s.Get(h.ctx, []byte("a")); return err }},
		{"Scan", func() error { return s.Scan(h.ctx, sdk.Range{}, func(sdk.Entry) error { return nil }) }},
		{"Stats", func() error { _, err := s.Stats(h.ctx); return err }},
	}
	if h.info.Has(capCompact) {
		calls = append(calls, struct {
			name string
			call func() error
		}{"Compact", func() error { return s.Compact(h.ctx) }})
	}
	if h.info.Has(capBulkLoad) {
		calls = append(calls, []struct {
			name string
			call func() error
		}{
			{"BeginLoad", func() error { return s.BeginLoad(h.ctx) }},
			{"EndLoad", func() error { return s.EndLoad(h.ctx) }},
		}...)
	}
	if h.info.Has(capSnapshot) {
		calls = append(calls, struct {
			name string
			call func() error
		}{"Snapshot", func() error { _, err := s.Snapshot(h.ctx); return err }})
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, sdk.ErrClosed) {
			h.Errorf("%s after Close = %v; want sdk.ErrClosed", c.name, err)
		}
	}
	if err := s.Close(h.ctx); err != nil && !errors.Is(err, sdk.ErrClosed) {
		h.Errorf("a second Close = %v; want nil or sdk.ErrClosed", err)
	}
	s.release()
	// Nothing attempted before Open or after Close reached the directory.
	s = h.open(dir)
	h.expectAll(s, m, "after reopen")
	s.close()
}
