package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
)

// The snapshot cases (sdk.Snapshotter, capability capSnapshot). A view is
// what the host exports a live fold through: it must hold exactly one
// committed batch, with its cursor and metadata, however many batches
// commit after it and for as long as it stays open, without holding those
// batches back.

// applyWait bounds how long an Apply may take while a view's Scan is under
// way before the case decides that it waits for the view; the later
// batches of caseSnapshot, together, get four times as long.
const applyWait = 15 * time.Second

// viewBase is the fold views are opened on: 150 "k/" keys, 20 "p/" keys,
// values large enough that a full scan spans several of the sdk's scan
// messages, an empty value and keys of 0xff bytes (cursor 10); then
// overwrites and deletes of some of them, and metadata (cursor 20).
func viewBase() []*sdk.Batch {
	b1 := &sdk.Batch{Cursor: 10, Meta: map[string][]byte{"gen": []byte("1"), "keep": []byte("x")}}
	for i := range 150 {
		b1.Mutations = append(b1.Mutations, put(fmt.Sprintf("k/%03d", i), fmt.Sprintf("g1:%d", i), uint64(i+1)))
	}
	for i := range 20 {
		b1.Mutations = append(b1.Mutations, put(fmt.Sprintf("p/%02d", i), "p", uint64(200+i)))
	}
	for i := range 4 {
		v := bytes.Repeat([]byte{byte('a' + i)}, 300<<10)
		b1.Mutations = append(b1.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "big/%d", i), Value: v, Revision: uint64(250 + i)})
	}
	b1.Mutations = append(b1.Mutations, put("e/empty", "", 300), put("\xff\x00", "high", 301), put("\xff", "ff", 302))
	b2 := &sdk.Batch{Cursor: 20, Meta: map[string][]byte{"gen": []byte("2"), "empty": {}}}
	for i := range 50 {
		b2.Mutations = append(b2.Mutations, put(fmt.Sprintf("k/%03d", i), fmt.Sprintf("g2:%d", i), uint64(400+i)))
	}
	for i := 100; i < 120; i++ {
		b2.Mutations = append(b2.Mutations, del(fmt.Sprintf("k/%03d", i)))
	}
	b2.Mutations = append(b2.Mutations, del("never"))
	return []*sdk.Batch{b1, b2}
}

// laterBatches are n batches after cursor, for the fold of viewBase, that
// change what a view of it holds: overwrites and deletes of its keys, new
// keys between and after them, the "p/" keys deleted and put back, the big
// values overwritten and deleted, metadata changed and added; every fifth
// batch moves only the cursor and metadata.
func laterBatches(rnd *rand.Rand, cursor uint64, n int) []*sdk.Batch {
	out := make([]*sdk.Batch, 0, n)
	for j := range n {
		cursor += 10
		b := &sdk.Batch{Cursor: cursor, Meta: map[string][]byte{"gen": fmt.Appendf(nil, "later-%d", j)}}
		out = append(out, b)
		if j%5 == 4 {
			continue
		}
		for range 10 {
			i := rnd.IntN(150)
			b.Mutations = append(b.Mutations, put(fmt.Sprintf("k/%03d", i), fmt.Sprintf("later-%d:%d", j, i), cursor))
		}
		for range 5 {
			b.Mutations = append(b.Mutations, del(fmt.Sprintf("k/%03d", rnd.IntN(150))))
		}
		b.Mutations = append(b.Mutations,
			put(fmt.Sprintf("k/%03d5", rnd.IntN(150)), "between", cursor),
			put(fmt.Sprintf("k/%03d", 150+j), "new", cursor),
			put("e/empty", fmt.Sprint(j), cursor))
		if j%3 == 0 {
			for i := range 20 {
				b.Mutations = append(b.Mutations, del(fmt.Sprintf("p/%02d", i)))
			}
		} else {
			b.Mutations = append(b.Mutations, put(fmt.Sprintf("p/%02d", j%20), "back", cursor))
		}
		switch j % 4 {
		case 0:
			b.Mutations = append(b.Mutations, put("big/1", "small now", cursor), del("big/2"))
		case 2:
			b.Mutations = append(b.Mutations, del("\xff"))
			b.Meta["keep"], b.Meta["new"] = []byte("changed"), []byte("added")
		}
	}
	return out
}

// viewRanges are the ranges a view is scanned with besides the whole fold:
// every bound of sdk.Range, over keys the later batches change.
var viewRanges = []sdk.Range{
	{Prefix: []byte("k/")}, {Prefix: []byte("k/0")}, {Prefix: []byte("p/"), KeysOnly: true}, {Prefix: []byte("\xff")},
	{Start: []byte("k/040"), End: []byte("k/060")}, {Start: []byte("e"), End: []byte("k/001")}, {Start: []byte("k/1"), End: []byte("k/0")},
	{After: []byte("k/049")}, {After: []byte("k/110"), Limit: 5}, {Prefix: []byte("k/"), After: []byte("k/098"), Limit: 30},
	{Limit: 1}, {Start: []byte("big/"), End: []byte("big/3"), KeysOnly: true},
}

// pageLimit is the page size of expectView's walk.
const pageLimit = 17

// expectView fails the case unless v holds exactly m: its State, a full
// Scan, a Scan of each of viewRanges, and a walk over "k/" in pages (After
// the last key of the previous page).
func (h *harness) expectView(v sdk.Snapshot, m *model, when string) {
	h.rep.Helper()
	if d := diffState(v.State(), m); d != "" {
		h.Fatalf("%s: the view's State has %s", when, d)
	}
	for _, r := range append([]sdk.Range{{}}, viewRanges...) {
		h.expectViewScan(v, m, r, when)
	}
	base := sdk.Range{Prefix: []byte("k/")}
	got, err := pages(h, v, base, pageLimit)
	if err != nil {
		h.Fatalf("%s: paging the view's Scan%s with limit %d: %v", when, showRange(base), pageLimit, err)
	}
	if d := diffEntries(got, m.scan(base), false); d != "" {
		h.Fatalf("%s: paging the view's Scan%s with limit %d: %s", when, showRange(base), pageLimit, d)
	}
}

// expectViewScan fails the case unless v's Scan of r returns m's entries.
func (h *harness) expectViewScan(v sdk.Snapshot, m *model, r sdk.Range, when string) {
	h.rep.Helper()
	got, err := scanAll(h.ctx, v, r)
	if err != nil {
		h.Fatalf("%s: the view's Scan%s: %v", when, showRange(r), err)
	}
	if d := diffEntries(got, m.scan(r), r.KeysOnly); d != "" {
		h.Fatalf("%s: the view's Scan%s: %s (a view must stay at the batch it was opened at)", when, showRange(r), d)
	}
}

// pages returns the entries of base, read in pages of limit.
func pages(h *harness, sc scanner, base sdk.Range, limit int) ([]sdk.Entry, error) {
	var out []sdk.Entry
	r := base
	r.Limit = limit
	for n := 0; ; n++ {
		if n > 1000 {
			return out, errors.New("paging does not end after 1000 pages")
		}
		page, err := scanAll(h.ctx, sc, r)
		if err != nil {
			return out, err
		}
		if len(page) > limit {
			return out, fmt.Errorf("a page of limit %d has %d entries", limit, len(page))
		}
		out = append(out, page...)
		if len(page) < limit {
			return out, nil
		}
		r.After = page[len(page)-1].Key
	}
}

// applyBase applies viewBase to s and m.
func applyBase(s *store, m *model) {
	for _, b := range viewBase() {
		s.apply(b)
		m.apply(b)
	}
}

func caseSnapshot(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	applyBase(s, m)
	v := s.snapshot()
	at := m.clone()
	h.expectView(v, at, "a view opened at cursor 20")

	// Batches applied by another goroutine while this one reads the view.
	later := laterBatches(h.rnd, m.cursor, 24)
	for _, b := range later {
		m.apply(b)
	}
	done := make(chan error, 1)
	go func() {
		for _, b := range later {
			if err := s.Apply(h.ctx, b); err != nil {
				done <- fmt.Errorf("Apply(cursor %d) while a view is open: %w", b.Cursor, err)
				return
			}
		}
		done <- nil
	}()
	deadline := time.After(4 * applyWait)
	for i, running := 0, true; running; i++ {
		select {
		case err := <-done:
			if err != nil {
				h.Fatalf("%v", err)
			}
			running = false
		case <-deadline:
			h.Fatalf("%d batches were not applied within %v while a view was read: does Apply wait for views?", len(later), 4*applyWait)
		default:
		}
		when := fmt.Sprintf("while batches were applied (read %d)", i)
		h.expectViewScan(v, at, sdk.Range{}, when)
		h.expectViewScan(v, at, viewRanges[i%len(viewRanges)], when)
	}
	h.expectView(v, at, fmt.Sprintf("after %d batches applied while the view was open", len(later)))
	h.expectData(s, m, "the store, after batches applied while a view was open")

	// A Scan its callback stops (across a plugin boundary, one the host
	// cancels) leaves the view at its batch.
	errStop := errors.New("conformance: stop here")
	calls := 0
	err := v.Scan(h.ctx, sdk.Range{}, func(sdk.Entry) error {
		if calls++; calls == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 3 {
		h.Errorf("a view's Scan whose callback fails on the 3rd entry = %v after %d calls; want the callback's error after 3", err, calls)
	}
	h.expectView(v, at, "after a view's Scan stopped by its callback")

	// An Apply while a view's Scan is under way: the Scan's callback waits
	// for the Apply to return, which must not wait for the Scan.
	b := batch(m.cursor+10, put("k/000", "during a view's scan", m.cursor+10), del("k/001"), del("big/0"), put("big/3", "", m.cursor+11))
	b.Meta = map[string][]byte{"gen": []byte("during")}
	m.apply(b)
	errWaited := errors.New("the Apply did not return")
	applied := make(chan error, 1)
	var got []sdk.Entry
	err = v.Scan(h.ctx, sdk.Range{}, func(e sdk.Entry) error {
		if len(got) == 0 {
			go func() { applied <- s.Apply(h.ctx, b) }()
			select {
			case err := <-applied:
				applied <- err
			case <-time.After(applyWait):
				return errWaited
			}
		}
		got = append(got, sdk.Entry{Key: bytes.Clone(e.Key), Value: bytes.Clone(e.Value), Revision: e.Revision})
		return nil
	})
	switch {
	case errors.Is(err, errWaited):
		h.Fatalf("an Apply did not return within %v while a view's Scan was under way: Apply must not wait for a view", applyWait)
	case err != nil:
		h.Fatalf("the view's Scan during an Apply: %v", err)
	}
	if err := <-applied; err != nil {
		h.Fatalf("Apply during a view's Scan: %v", err)
	}
	if d := diffEntries(got, at.scan(sdk.Range{}), false); d != "" {
		h.Fatalf("a view's Scan during an Apply: %s", d)
	}
	h.expectView(v, at, "after an Apply during a view's Scan")
	h.expectData(s, m, "the store, after an Apply during a view's Scan")

	if err := v.Close(); err != nil {
		h.Errorf("Close of a view: %v", err)
	}
	s = s.reopen()
	h.expectAll(s, m, "reopened after the view was closed")
	s.close()
}

func caseSnapshotMany(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	type opened struct {
		v      sdk.Snapshot
		m      *model
		name   string
		closed bool
	}
	var views []*opened
	take := func(name string) {
		views = append(views, &opened{v: s.snapshot(), m: m.clone(), name: name})
	}
	closeView := func(o *opened) {
		if err := o.v.Close(); err != nil {
			h.Errorf("Close of %s: %v", o.name, err)
		}
		o.closed = true
	}
	take("a view of a new store")
	base := viewBase()
	s.apply(base[0])
	m.apply(base[0])
	take("a view at cursor 10")
	take("a second view at cursor 10")
	s.apply(base[1])
	m.apply(base[1])
	take("a view at cursor 20")
	for i, b := range laterBatches(h.rnd, m.cursor, 8) {
		s.apply(b)
		m.apply(b)
		if i%2 == 1 {
			take(fmt.Sprintf("a view at cursor %d", b.Cursor))
		}
	}
	// Every view holds its own batch, read in an order other than opened.
	for _, i := range h.rnd.Perm(len(views)) {
		h.expectView(views[i].v, views[i].m, views[i].name+", beside the others")
	}
	// Closing some changes nothing for the others, through more batches.
	for i := 0; i < len(views); i += 2 {
		closeView(views[i])
	}
	for _, b := range laterBatches(h.rnd, m.cursor, 6) {
		s.apply(b)
		m.apply(b)
	}
	take("a view opened last")
	for _, i := range h.rnd.Perm(len(views)) {
		if o := views[i]; !o.closed {
			h.expectView(o.v, o.m, o.name+", after other views were closed and more batches applied")
		}
	}
	h.expectData(s, m, "the store, with views open")
	for _, o := range views {
		if !o.closed {
			closeView(o)
		}
	}
	s = s.reopen()
	h.expectAll(s, m, "reopened after every view was closed")
	s.close()
}

func caseSnapshotClose(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	applyBase(s, m)
	v := s.snapshot()
	w := s.snapshot()
	if err := v.Close(); err != nil {
		h.Errorf("Close of a view: %v", err)
	}
	if err := v.Close(); err != nil {
		h.Errorf("a second Close of a view = %v; want nil (closing twice does nothing)", err)
	}
	for _, r := range []sdk.Range{{}, {Prefix: []byte("k/"), Limit: 3}} {
		if got, err := scanAll(h.ctx, v, r); err == nil {
			h.Errorf("Scan%s of a closed view returned %d entries; want an error", showRange(r), len(got))
		} else {
			h.Logf("Scan%s of a closed view: %v", showRange(r), err)
		}
	}
	h.expectView(w, m, "a view beside one that was closed")
	at := m.clone()
	for _, b := range laterBatches(h.rnd, m.cursor, 3) {
		s.apply(b)
		m.apply(b)
	}
	h.expectData(s, m, "the store, after a view of it was closed")
	h.expectView(w, at, "a view beside one that was closed, after more batches")
	for range 2 {
		if err := w.Close(); err != nil {
			h.Errorf("Close of a view = %v", err)
		}
	}
	if _, err := scanAll(h.ctx, w, sdk.Range{}); err == nil {
		h.Errorf("Scan of a closed view succeeded; want an error")
	}
	x := s.snapshot()
	h.expectView(x, m, "a view opened after others were closed")
	if err := x.Close(); err != nil {
		h.Errorf("Close of a view: %v", err)
	}
	s = s.reopen()
	h.expectAll(s, m, "reopened after its views were closed")
	s.close()
}

func caseSnapshotStoreClose(h *harness) {
	dir := h.dir()
	s := h.open(dir)
	m := newModel()
	applyBase(s, m)
	v := s.snapshot()
	for _, b := range laterBatches(h.rnd, m.cursor, 2) {
		s.apply(b)
		m.apply(b)
	}
	w := s.snapshot()
	h.expectView(w, m, "a view opened before the store closes")
	if err := s.Close(h.ctx); err != nil {
		h.Fatalf("Close of a store with two views open: %v", err)
	}
	views := []struct {
		v    sdk.Snapshot
		name string
	}{{v, "a view at cursor 20"}, {w, fmt.Sprintf("a view at cursor %d", m.cursor)}}
	for _, c := range views {
		if _, err := scanAll(h.ctx, c.v, sdk.Range{}); !errors.Is(err, sdk.ErrClosed) {
			h.Errorf("Scan of %s after the store's Close = %v; want sdk.ErrClosed (closing the store closes its views)", c.name, err)
		}
	}
	if _, err := s.Snapshot(h.ctx); !errors.Is(err, sdk.ErrClosed) {
		h.Errorf("Snapshot of a closed store = %v; want sdk.ErrClosed", err)
	}
	// The same instance opened again: its old views stay closed.
	s = h.openOn(s.instance, dir)
	h.expectAll(s, m, "reopened after a Close with views open")
	for _, c := range views {
		if _, err := scanAll(h.ctx, c.v, sdk.Range{}); !errors.Is(err, sdk.ErrClosed) {
			h.Errorf("Scan of %s, after its store was closed and opened again = %v; want sdk.ErrClosed", c.name, err)
		}
		if err := c.v.Close(); err != nil && !errors.Is(err, sdk.ErrClosed) {
			h.Errorf("Close of %s, which the store's Close closed = %v; want nil or sdk.ErrClosed", c.name, err)
		}
	}
	x := s.snapshot()
	h.expectView(x, m, "a view of the store opened again")
	if err := x.Close(); err != nil {
		h.Errorf("Close of a view: %v", err)
	}
	s.close()
}
