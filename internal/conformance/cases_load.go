package conformance

import (
	"fmt"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
)

// The bulk-load cases (sdk.Loader, capability capBulkLoad). A load is
// what the host does to re-list a bucket into an empty store: BeginLoad,
// batches in which keys come many times (the listing overlaps live writes)
// and are deleted, reads, restarts, and EndLoad once caught up.

// loadBulk is n puts of bulk keys first..first+n-1: revision rev+i, a
// value of at least size bytes that names the key and gen.
func loadBulk(first, n, size int, gen string, rev uint64) []sdk.Mutation {
	ms := make([]sdk.Mutation, n)
	for i := range ms {
		k := first + i
		v := fmt.Appendf(nil, "%s:%06d:", gen, k)
		for len(v) < size {
			v = append(v, byte('a'+(k+len(v))%26))
		}
		ms[i] = sdk.Mutation{Op: sdk.OpPut, Key: bulkKey(k), Value: v, Revision: rev + uint64(i)}
	}
	return ms
}

func bulkKey(i int) []byte { return fmt.Appendf(nil, "bulk/%06d", i) }

func delBulk(i int) sdk.Mutation { return sdk.Mutation{Op: sdk.OpDelete, Key: bulkKey(i)} }

// loadProbes are the keys bulk-load reads one by one with Get, besides a
// sample of the bulk keys: each is put, overwritten or deleted in a way a
// load may get wrong.
var loadProbes = []string{
	"d/in", "d/across", "d/lower-rev", "x/del", "x/del-reput", "x/del-reput-in",
	"x/pd", "x/never", "e/nil", "e/empty", "e/to-empty", "e/from-empty", "z/after",
}

// loadRanges are the ranges bulk-load scans, besides the whole fold.
var loadRanges = []sdk.Range{
	{Prefix: []byte("d/")},
	{Prefix: []byte("x/")},
	{Prefix: []byte("e/"), KeysOnly: true},
	{Start: []byte("bulk/000990"), End: []byte("bulk/001030")},
	{Prefix: []byte("bulk/"), After: []byte("bulk/001495"), Limit: 12},
}

// expectLoaded is expectScan plus the loadRanges, and a Get of every probe
// key and of every 37th bulk key up to bulkKeys: present with the model's
// entry, or sdk.ErrNotFound.
func (h *harness) expectLoaded(s *store, m *model, bulkKeys int, when string) {
	h.rep.Helper()
	h.expectScan(s, m, when)
	for _, r := range loadRanges {
		if d := diffEntries(s.scan(r), m.scan(r), r.KeysOnly); d != "" {
			h.Fatalf("%s: Scan%s: %s", when, showRange(r), d)
		}
	}
	keys := append([]string(nil), loadProbes...)
	for i := 0; i < bulkKeys; i += 37 {
		keys = append(keys, string(bulkKey(i)))
	}
	for _, k := range keys {
		e, ok := s.get([]byte(k))
		w, want := m.data[k]
		switch {
		case ok && !want:
			h.Fatalf("%s: Get(%s) = value %s, revision %d; want sdk.ErrNotFound (deleted or never put)", when, show([]byte(k)), show(e.Value), e.Revision)
		case !ok && want:
			h.Fatalf("%s: Get(%s) = sdk.ErrNotFound; want value %s, revision %d", when, show([]byte(k)), show(w.Value), w.Revision)
		case ok:
			if d := diffEntries([]sdk.Entry{e}, []sdk.Entry{w}, false); d != "" {
				h.Fatalf("%s: Get: %s", when, d)
			}
		}
	}
}

// expectReopened is expectState and expectLoaded for a store reopened after
// a crash. During a load the store may have lost batches of its own
// (model.crashStates); m takes the state it was found in.
func (h *harness) expectReopened(s *store, m *model, bulkKeys int, when string) {
	h.rep.Helper()
	rec, _ := h.recovered(s, m, nil, when)
	*m = *rec
	h.expectState(s, m, when)
	h.expectLoaded(s, m, bulkKeys, when)
}

func caseBulkLoad(h *harness) {
	const bulk = 3000
	s := h.open(h.dir())
	m := newModel()
	apply := func(b *sdk.Batch) {
		s.apply(b)
		m.apply(b)
	}
	h.expectState(s, m, "new store")
	s.endLoad() // not loading: does nothing
	h.expectLoaded(s, m, bulk, "after EndLoad on a new store that is not loading")
	s.beginLoad()
	m.beginLoad()
	h.expectLoaded(s, m, bulk, "after BeginLoad")

	// The first half of a listing, and live writes: a key put three times
	// in one batch, keys the next batches delete or overwrite, empty
	// values, a delete of a key never put.
	b1 := &sdk.Batch{Cursor: 1000, Meta: map[string][]byte{"stream": []byte("KV_load"), "phase": []byte("list")}}
	b1.Mutations = append(loadBulk(0, bulk/2, 100, "g1", 1),
		put("d/in", "1", 1001), put("d/in", "22", 1002), put("d/in", "333", 1003),
		put("d/across", "first", 1004),
		put("d/lower-rev", "live write", 900),
		put("x/del", "doomed", 5), put("x/del-reput", "v1", 6), put("x/del-reput-in", "v1", 7),
		sdk.Mutation{Op: sdk.OpPut, Key: []byte("e/nil"), Revision: 8}, put("e/empty", "", 9),
		put("e/to-empty", "abc", 10), put("e/from-empty", "", 11),
		del("x/never"),
	)
	apply(b1)
	// The second half; keys of the first put again with other values
	// (longer, and shorter), deleted, deleted and put back in one batch,
	// put and deleted in one batch; a put with a lower revision than the
	// key's last (the last mutation wins, whatever its revision).
	b2 := &sdk.Batch{Cursor: 2000}
	b2.Mutations = append(loadBulk(bulk/2, bulk-bulk/2, 100, "g1", 1001), loadBulk(0, 300, 150, "g2", 2001)...)
	b2.Mutations = append(b2.Mutations, loadBulk(300, 100, 20, "g2", 2301)...)
	for i := 1000; i < 1500; i += 10 {
		b2.Mutations = append(b2.Mutations, delBulk(i))
	}
	b2.Mutations = append(b2.Mutations,
		del("x/del"), del("x/del-reput"), del("x/del-reput-in"), put("x/del-reput-in", "v2", 1901),
		put("x/pd", "short-lived", 1902), del("x/pd"),
		put("d/across", "second", 1903), put("e/to-empty", "", 1904), put("e/from-empty", "xyz", 1905),
		put("d/lower-rev", "listed", 800),
		del("x/never"),
	)
	apply(b2)
	h.expectLoaded(s, m, bulk, "during the load (Get, Scan and Stats must be correct, if slow)")

	// A restart in the middle of the load: the load goes on.
	s = s.reopen()
	h.expectState(s, m, "reopened during the load")
	h.expectLoaded(s, m, bulk, "reopened during the load")
	b3 := &sdk.Batch{Cursor: 3000, Meta: map[string][]byte{"phase": []byte("live")}}
	b3.Mutations = []sdk.Mutation{put("x/del-reput", "v2", 2901), put("d/across", "third", 2902), put("d/in", "4444", 2903)}
	for i := 1000; i < 1500; i += 20 {
		b3.Mutations = append(b3.Mutations, loadBulk(i, 1, 60, "g3", 2910)...) // back after a delete
	}
	for i := range 50 {
		b3.Mutations = append(b3.Mutations, delBulk(i)) // put twice, then deleted
	}
	apply(b3)
	apply(b3) // re-applied, as after a host restart
	apply(&sdk.Batch{Cursor: 3100, Meta: map[string][]byte{"phase": []byte("caught-up")}})
	h.expectLoaded(s, m, bulk, "after more batches during the load")

	s.endLoad()
	m.endLoad()
	h.expectLoaded(s, m, bulk, "after EndLoad")
	s.endLoad() // not loading any more: does nothing
	h.expectLoaded(s, m, bulk, "after a second EndLoad")
	s = s.reopen()
	h.expectState(s, m, "reopened after EndLoad")
	h.expectLoaded(s, m, bulk, "reopened after EndLoad")

	// Applies after the load keep exact contents and stats.
	apply(batch(3200,
		put(string(bulkKey(500)), "a value longer than the loaded one, to change the byte count of the key", 3101),
		put(string(bulkKey(501)), "", 3102), delBulk(502), delBulk(0), delBulk(1010),
		put("d/in", "5", 3103), put("z/after", "new", 3104), put("x/del", "back", 3105), del("e/empty"),
	))
	h.expectLoaded(s, m, bulk, "after applies that follow the load")

	// The store holds keys and a cursor: a new load is refused.
	if err := s.BeginLoad(h.ctx); err == nil {
		h.Errorf("BeginLoad on a store holding %d keys at cursor %d succeeded; want an error", len(m.data), m.cursor)
	}
	h.expectLoaded(s, m, bulk, "after BeginLoad on the loaded store")
	s = s.reopen()
	h.expectState(s, m, "reopened at the end")
	h.expectLoaded(s, m, bulk, "reopened at the end")
	s.close()
}

func caseBulkLoadRefused(h *harness) {
	// refuse calls BeginLoad on s, which holds what, and checks that it
	// fails and changes nothing, then that the store works on.
	refuse := func(s *store, m *model, what string) *store {
		h.rep.Helper()
		if err := s.BeginLoad(h.ctx); err == nil {
			h.Errorf("BeginLoad on a store that %s succeeded; want an error", what)
		} else {
			h.Logf("BeginLoad on a store that %s: %v", what, err)
		}
		when := "after BeginLoad on a store that " + what
		h.expectData(s, m, when)
		s.endLoad() // not loading: does nothing
		h.expectData(s, m, when+" and EndLoad")
		s = s.reopen()
		h.expectAll(s, m, when+" and reopen")
		b := batch(m.cursor+1, put("after", "x", m.cursor+1), del("a"))
		s.apply(b)
		m.apply(b)
		s = s.reopen()
		h.expectAll(s, m, when+", another batch and reopen")
		return s
	}
	for _, c := range []struct {
		what    string
		batches []*sdk.Batch
	}{
		{"holds keys and a cursor", []*sdk.Batch{
			{Mutations: []sdk.Mutation{put("a", "1", 1), put("b", "", 2)}, Cursor: 5, Meta: map[string][]byte{"stream": []byte("KV_x")}},
		}},
		{"holds only a cursor (a batch without mutations)", []*sdk.Batch{
			{Cursor: 7, Meta: map[string][]byte{"stream": []byte("KV_x")}},
		}},
		{"holds only a cursor (its keys were deleted)", []*sdk.Batch{
			batch(3, put("a", "1", 1), put("b", "2", 2)), batch(4, del("a"), del("b")),
		}},
		{"holds keys at cursor 0", []*sdk.Batch{
			batch(0, put("a", "1", 1), put("b", "2", 2)),
		}},
	} {
		s := h.open(h.dir())
		m := newModel()
		for _, b := range c.batches {
			s.apply(b)
			m.apply(b)
		}
		refuse(s, m, c.what).close()
	}

	// In the middle of a load that holds keys, BeginLoad fails too, and
	// leaves the load as it was.
	s := h.open(h.dir())
	m := newModel()
	s.beginLoad()
	m.beginLoad()
	b := batch(10, put("a", "1", 1), put("a", "2", 2), put("b", "3", 3), del("c"))
	s.apply(b)
	m.apply(b)
	if err := s.BeginLoad(h.ctx); err == nil {
		h.Errorf("BeginLoad during a load that holds keys and a cursor succeeded; want an error")
	}
	h.expectData(s, m, "after BeginLoad during a load")
	s = s.reopen()
	h.expectAll(s, m, "after BeginLoad during a load, and reopen")
	s.endLoad()
	m.endLoad()
	h.expectData(s, m, "after EndLoad")
	s = s.reopen()
	h.expectAll(s, m, "after EndLoad and reopen")
	s.close()
}

func caseBulkLoadCrash(h *harness) {
	const bulk = 2000
	dir := h.dir()
	s := h.open(dir)
	m := newModel()
	apply := func(b *sdk.Batch) {
		s.apply(b)
		m.apply(b)
	}
	s.beginLoad()
	m.beginLoad()
	s = s.crash()
	h.expectReopened(s, m, bulk, "crash right after BeginLoad")

	b1 := &sdk.Batch{Cursor: 100, Meta: map[string][]byte{"gen": []byte("1")}}
	b1.Mutations = append(loadBulk(0, bulk, 64, "g1", 1), put("d/in", "1", 1), put("d/in", "2", 2), put("x/del", "1", 3))
	apply(b1)
	s = s.crash()
	h.expectReopened(s, m, bulk, "crash during the load, after a batch")

	b2 := &sdk.Batch{Cursor: 200, Meta: map[string][]byte{"gen": []byte("2")}}
	b2.Mutations = append(loadBulk(0, bulk/4, 80, "g2", 101), del("x/del"), put("d/in", "3", 102))
	for i := bulk / 2; i < bulk; i += 3 {
		b2.Mutations = append(b2.Mutations, delBulk(i))
	}
	apply(b2)
	apply(&sdk.Batch{Cursor: 250})
	s = s.crash()
	h.expectReopened(s, m, bulk, "crash during the load, after more batches")

	if h.target.process {
		s, m = killMidLoad(h, s, m, dir)
	}

	s.endLoad()
	m.endLoad()
	s = s.crash()
	h.expectReopened(s, m, bulk, "crash right after EndLoad returned")
	apply(batch(m.cursor+10, put("d/in", "after", m.cursor+1), delBulk(1), delBulk(bulk/2)))
	s = s.crash()
	h.expectReopened(s, m, bulk, "crash after an Apply that follows the load")
	s.close()
}

// killMidLoad SIGKILLs the plugin of s in the middle of Applies during the
// load, then in the middle of EndLoad; after each kill the store must
// reopen still loading, with the previous batch or the new one, whole. It
// returns the store, reopened, and its model (loading, unless the kill
// landed after EndLoad's commit).
func killMidLoad(h *harness, s *store, m *model, dir string) (*store, *model) {
	const n, size = 1024, 2048 // 2 MiB batches
	filler := randomBytes(h.rnd, size-8)
	// One batch without a kill measures how long one takes.
	b := genBatch(filler, n, m.cursor+1)
	start := time.Now()
	s.apply(b)
	took := time.Since(start)
	m.apply(b)
	for i := range 3 {
		b := genBatch(filler, n, m.cursor+1)
		delay := 2*took*time.Duration(i)/3 + h.randomDelay(2*took/3)
		s, _ = h.killDuringApply(s, m, dir, b, delay, " of the load")
	}

	// EndLoad, killed at a random point: the load is over or not, and the
	// data is the same either way.
	delay := h.randomDelay(took)
	done := make(chan error, 1)
	go func(s *store) { done <- s.EndLoad(h.ctx) }(s)
	time.Sleep(delay)
	if err := s.kill(); err != nil {
		h.Fatalf("kill during EndLoad: %v", err)
	}
	err := <-done
	s.release()
	s = h.open(dir)
	switch {
	case s.state.Loading:
		if err == nil {
			h.Fatalf("EndLoad returned success, yet after a kill %v later the store reopened still loading", delay.Round(time.Millisecond))
		}
		h.Logf("killed %v into EndLoad: still loading", delay.Round(time.Millisecond))
		rec, _ := h.recovered(s, m, nil, fmt.Sprintf("reopened after a kill %v into EndLoad", delay.Round(time.Millisecond)))
		*m = *rec
	default:
		h.Logf("killed %v into EndLoad: the load is over", delay.Round(time.Millisecond))
		m.endLoad()
	}
	when := fmt.Sprintf("reopened after a kill %v into EndLoad", delay.Round(time.Millisecond))
	h.expectState(s, m, when)
	h.expectScan(s, m, when)
	return s, m
}
