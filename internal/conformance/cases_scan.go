package conformance

import (
	"errors"
	"fmt"

	"github.com/slipstreamkv/slipstream/sdk"
)

// scanKeys are ordered by unsigned bytes in a way signed or text
// comparisons get wrong.
var scanKeys = []string{
	"\x00", "\x00\x01", "a", "a\x00", "a/1", "a/10", "a/2", "a/\xff", "ab",
	"b", "b/x", "b\xff", "\x7f", "\x80", "\xff", "\xff\xff", "\xff\xff\x00", "z",
}

func caseScanRanges(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	b := &sdk.Batch{Cursor: 1}
	for i, k := range scanKeys {
		b.Mutations = append(b.Mutations, put(k, "v"+k, uint64(i+1)))
	}
	s.apply(b)
	m.apply(b)
	bs := func(s string) []byte { return []byte(s) }
	ranges := []sdk.Range{
		{},
		{Prefix: bs("a")}, {Prefix: bs("a/")}, {Prefix: bs("\x00")}, {Prefix: bs("\xff")}, {Prefix: bs("\xff\xff")}, {Prefix: bs("nope")},
		{Start: bs("a/")}, {End: bs("b")}, {Start: bs("a/1"), End: bs("a/2")}, {Start: bs("\x7f"), End: bs("\x80\x00")},
		{Start: bs("b"), End: bs("a")}, {Start: bs("a"), End: bs("a")},
		{After: bs("\x00")}, {After: bs("a")}, {After: bs("a/10")}, {After: bs("\xff\xff\x00")}, {After: bs("zz")},
		{Prefix: bs("a/"), After: bs("a/1")}, {Prefix: bs("a/"), After: bs("a/\xff")}, {Prefix: bs("b"), After: bs("a")},
		{Prefix: bs("a"), Start: bs("a/"), End: bs("ab")}, {Start: bs("a"), End: bs("b"), After: bs("a/2")},
		{Start: bs("a"), End: bs("b"), After: bs("b")},
		{Limit: 1}, {Prefix: bs("a/"), Limit: 2}, {Start: bs("\x80"), Limit: 3}, {After: bs("a"), Limit: 4},
	}
	for _, r := range ranges {
		if d := diffEntries(s.scan(r), m.scan(r), false); d != "" {
			h.Errorf("Scan%s: %s", showRange(r), d)
		}
	}
	errStop := errors.New("conformance: stop here")
	calls := 0
	err := s.Scan(h.ctx, sdk.Range{}, func(sdk.Entry) error {
		if calls++; calls == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 3 {
		h.Errorf("Scan whose callback fails on the 3rd entry = %v after %d calls; want the callback's error after 3", err, calls)
	}
	s.close()
}

func caseScanPagination(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	b := &sdk.Batch{Cursor: 1}
	for i := range 300 {
		prefix := "p/"
		if i >= 200 {
			prefix = "q/"
		}
		b.Mutations = append(b.Mutations, put(fmt.Sprintf("%s%03d", prefix, i), fmt.Sprint(i), uint64(i+1)))
	}
	s.apply(b)
	m.apply(b)
	bases := []sdk.Range{{}, {Prefix: []byte("p/")}, {Start: []byte("p/150"), End: []byte("q/250")}}
	for _, base := range bases {
		want := m.scan(base)
		for _, limit := range []int{1, 7, 64, 1000} {
			var got []sdk.Entry
			r := base
			r.Limit = limit
			for pages := 0; ; pages++ {
				if pages > len(want)+1 {
					h.Fatalf("paging Scan%s does not end: %d pages of limit %d for %d entries", showRange(base), pages, limit, len(want))
				}
				page := s.scan(r)
				if len(page) > limit {
					h.Fatalf("Scan%s returned %d entries", showRange(r), len(page))
				}
				got = append(got, page...)
				if len(page) < limit {
					break
				}
				r.After = page[len(page)-1].Key
			}
			if d := diffEntries(got, want, false); d != "" {
				h.Errorf("paging Scan%s with limit %d: %s", showRange(base), limit, d)
			}
		}
	}
	s.close()
}

func caseKeysOnly(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	b := batch(1, put("a", "", 1), put("b", "short", 2), put("c", string(randomBytes(h.rnd, 64<<10)), 3), put("d/1", "x", 4), put("d/2", "y", 5))
	s.apply(b)
	m.apply(b)
	for _, r := range []sdk.Range{{KeysOnly: true}, {Prefix: []byte("d/"), KeysOnly: true}, {After: []byte("a"), Limit: 2, KeysOnly: true}} {
		if d := diffEntries(s.scan(r), m.scan(r), true); d != "" {
			h.Errorf("Scan%s: %s", showRange(r), d)
		}
	}
	s.close()
}
