package fold

import (
	"bytes"
	"sort"

	"github.com/slipstreamkv/slipstream/sdk"
)

// Change is one change the fold committed to its published generation, as
// its store holds it (after the transforms): a put with its value, or a
// delete. Revision is the stream sequence of the update behind it.
type Change struct {
	Op       sdk.Op // sdk.OpPut or sdk.OpDelete
	Key      []byte
	Value    []byte
	Revision uint64
}

func (c *Change) size() int64 { return int64(len(c.Key)+len(c.Value)) + changeOverhead }

// changeOverhead is a Change's cost beyond its key and value.
const changeOverhead = 64

// feed is the recent changes of the published generation, in commit order
// (so in revision order), bounded in bytes: the changes after base are all
// there. Subscribers read it by absolute index; one that falls behind the
// oldest change held cannot be served and is told so. It is not safe for
// concurrent use: its live holds the lock.
type feed struct {
	changes []Change
	first   uint64 // absolute index of changes[0]
	base    uint64 // every change with a revision above base is held
	bytes   int64
	max     int64
}

// add appends the changes of one commit; their bytes are the caller's,
// never changed after.
func (f *feed) add(cs []Change) {
	for i := range cs {
		f.bytes += cs[i].size()
	}
	f.changes = append(f.changes, cs...)
	drop := 0
	for f.bytes > f.max && drop < len(f.changes) {
		f.bytes -= f.changes[drop].size()
		f.base = f.changes[drop].Revision
		drop++
	}
	if drop == 0 {
		return
	}
	f.first += uint64(drop)
	// Reuse the array while it is mostly live; copy when the dropped head
	// is the larger part, so the memory of old changes is given back.
	if drop > len(f.changes)/2 {
		f.changes = append([]Change(nil), f.changes[drop:]...)
	} else {
		clear(f.changes[:drop])
		f.changes = f.changes[drop:]
	}
}

// end is the absolute index after the newest change.
func (f *feed) end() uint64 { return f.first + uint64(len(f.changes)) }

// after returns the absolute index of the first change after revision rev,
// and whether every change after rev is held.
func (f *feed) after(rev uint64) (uint64, bool) {
	if rev < f.base {
		return 0, false
	}
	i := sort.Search(len(f.changes), func(i int) bool { return f.changes[i].Revision > rev })
	return f.first + uint64(i), true
}

// read returns the changes from absolute index pos on that match prefix,
// examining at most limit changes, with the index after the last change
// examined and that change's revision (0 when none was examined). ok is
// false when pos is older than the oldest change held.
func (f *feed) read(pos uint64, prefix []byte, limit int) (out []Change, next, rev uint64, ok bool) {
	if pos < f.first {
		return nil, pos, 0, false
	}
	i := int(pos - f.first)
	for n := 0; i < len(f.changes) && n < limit; i, n = i+1, n+1 {
		c := f.changes[i]
		rev = c.Revision
		if bytes.HasPrefix(c.Key, prefix) {
			out = append(out, c)
		}
	}
	return out, f.first + uint64(i), rev, true
}
