package conformance

import (
	"bytes"
	"fmt"
	"math/rand/v2"

	"github.com/slipstreamkv/slipstream/sdk"
)

func caseBinarySafe(h *harness) {
	var keys [][]byte
	for b := range 256 {
		keys = append(keys, []byte{byte(b)}, []byte{'k', byte(b), 'z'})
	}
	keys = append(keys,
		[]byte("\x00\x00"), []byte("a\x00"), []byte("a\x00b"), []byte("\xff\xff"), []byte("\xff\x00"),
		[]byte("\xc3\x28"), // invalid UTF-8
		[]byte("\x80\x80"),
	)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	values := [][]byte{all, bytes.Clone(all[128:]), {0}, []byte("\x00\x00abc\x00"), []byte("\xc3\x28\xff\xfe")}
	b := &sdk.Batch{Cursor: 1}
	for i, k := range keys {
		b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: k, Value: values[i%len(values)], Revision: uint64(i + 1)})
	}
	s := h.open(h.dir())
	m := newModel()
	s.apply(b)
	m.apply(b)
	h.expectData(s, m, "after binary puts")
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	s.close()
}

// randomBytes is n reproducible bytes that do not compress.
func randomBytes(rnd *rand.Rand, n int) []byte {
	out := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rnd.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			out[i+j] = byte(v >> (8 * j))
		}
	}
	return out
}

func caseLargeEntries(h *harness) {
	long := func(first, last byte) []byte {
		k := bytes.Repeat([]byte("k"), 4096)
		k[0], k[len(k)-1] = first, last
		return k
	}
	mib1, mib8 := randomBytes(h.rnd, 1<<20), randomBytes(h.rnd, 8<<20)
	b := &sdk.Batch{Cursor: 1, Mutations: []sdk.Mutation{
		{Op: sdk.OpPut, Key: long('k', 'a'), Value: []byte("small"), Revision: 1},
		{Op: sdk.OpPut, Key: long('k', 'b'), Value: mib1, Revision: 1},
		{Op: sdk.OpPut, Key: long('\xff', 'c'), Value: mib8, Revision: 1},
		{Op: sdk.OpPut, Key: []byte("small"), Value: mib1, Revision: 1},
	}}
	s := h.open(h.dir())
	m := newModel()
	s.apply(b)
	m.apply(b)
	h.expectData(s, m, "after large puts")
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	over := batch(2, sdk.Mutation{Op: sdk.OpPut, Key: long('k', 'a'), Value: mib8, Revision: 2}, sdk.Mutation{Op: sdk.OpDelete, Key: long('\xff', 'c')})
	s.apply(over)
	m.apply(over)
	h.expectData(s, m, "after overwriting and deleting large entries")
	s.close()
}

// bulkBatch is a batch of n puts of size-byte values under prefix, all with
// revision cursor: 20 MiB for n=5120, size=4096.
func bulkBatch(rnd *rand.Rand, prefix string, n, size int, cursor uint64) *sdk.Batch {
	b := &sdk.Batch{Cursor: cursor, Mutations: make([]sdk.Mutation, n)}
	for i := range b.Mutations {
		b.Mutations[i] = sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "%s%06d", prefix, i), Value: randomBytes(rnd, size), Revision: cursor}
	}
	return b
}

func caseLargeBatch(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	b := bulkBatch(h.rnd, "bulk/", 5120, 4096, 100)
	b.Meta = map[string][]byte{"bulk": []byte("1")}
	s.apply(b)
	m.apply(b)
	h.expectScan(s, m, "after a 20 MiB batch")
	// A second large batch: overwrite half the keys, delete a quarter.
	b2 := bulkBatch(h.rnd, "bulk/", 2560, 4096, 200)
	for i := 2560; i < 5120; i += 2 {
		b2.Mutations = append(b2.Mutations, sdk.Mutation{Op: sdk.OpDelete, Key: fmt.Appendf(nil, "bulk/%06d", i)})
	}
	b2.Mutations = append(b2.Mutations, bulkBatch(h.rnd, "more/", 2048, 4096, 200).Mutations...)
	s.apply(b2)
	m.apply(b2)
	s = s.reopen()
	h.expectState(s, m, "after a second large batch and reopen")
	h.expectData(s, m, "after a second large batch and reopen")
	s.close()
}
