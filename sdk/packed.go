package sdk

import (
	"fmt"

	"github.com/slipstreamkv/slipstream/sdk/internal/storepb"
)

// wireRevision is the revision of the protocol this SDK reads, reported in
// Info as wire: 1 reads ApplyRequest.packed. A host sends packed mutations
// only to a plugin that reports 1 or more; a plugin built with an older SDK
// reports 0 and gets one message per mutation, as before.
const wireRevision = 1

// pack lays ms out as one storepb.Packed: five allocations for the whole run
// instead of one message per mutation, on this side and on the other.
func pack(ms []Mutation) *storepb.Packed {
	size := 0
	for i := range ms {
		size += len(ms[i].Key) + len(ms[i].Value)
	}
	p := &storepb.Packed{
		Ops:          make([]byte, len(ms)),
		KeyLengths:   make([]uint32, len(ms)),
		ValueLengths: make([]uint32, len(ms)),
		Revisions:    make([]uint64, len(ms)),
		Data:         make([]byte, 0, size),
	}
	for i := range ms {
		m := &ms[i]
		p.Ops[i] = byte(storepb.Op_OP_PUT)
		if m.Op == OpDelete {
			p.Ops[i] = byte(storepb.Op_OP_DELETE)
		}
		p.KeyLengths[i], p.ValueLengths[i], p.Revisions[i] = uint32(len(m.Key)), uint32(len(m.Value)), m.Revision
		p.Data = append(append(p.Data, m.Key...), m.Value...)
	}
	return p
}

// appendPacked appends p's mutations to dst. Keys and values are slices of
// p.Data. A malformed run (counts or lengths that disagree, an unknown op)
// is an error and appends nothing: a batch is applied whole or not at all.
func appendPacked(dst []Mutation, p *storepb.Packed) ([]Mutation, error) {
	n := len(p.GetOps())
	if len(p.GetKeyLengths()) != n || len(p.GetValueLengths()) != n || len(p.GetRevisions()) != n {
		return dst, fmt.Errorf("packed mutations: %d ops, %d key lengths, %d value lengths, %d revisions",
			n, len(p.GetKeyLengths()), len(p.GetValueLengths()), len(p.GetRevisions()))
	}
	total := uint64(0)
	for i := range n {
		total += uint64(p.KeyLengths[i]) + uint64(p.ValueLengths[i])
	}
	if total != uint64(len(p.GetData())) {
		return dst, fmt.Errorf("packed mutations: lengths add up to %d bytes, data holds %d", total, len(p.GetData()))
	}
	out := dst
	if cap(out)-len(out) < n {
		out = make([]Mutation, len(dst), len(dst)+n)
		copy(out, dst)
	}
	data := p.GetData()
	for i := range n {
		var op Op
		switch storepb.Op(p.Ops[i]) {
		case storepb.Op_OP_PUT:
			op = OpPut
		case storepb.Op_OP_DELETE:
			op = OpDelete
		default:
			return dst, fmt.Errorf("packed mutations: mutation %d has op %d", i, p.Ops[i])
		}
		k, v := int(p.KeyLengths[i]), int(p.ValueLengths[i])
		// Full slice expressions: a store appending to a key or value
		// must not write over the next one.
		out = append(out, Mutation{Op: op, Key: data[:k:k], Value: data[k : k+v : k+v], Revision: p.Revisions[i]})
		data = data[k+v:]
	}
	return out, nil
}
