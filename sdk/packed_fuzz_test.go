package sdk

import (
	"bytes"
	"encoding/binary"
	"testing"

	"fmt"

	"github.com/slipstreamkv/slipstream/internal/storepb"
)

// FuzzAppendPacked feeds appendPacked every packed run a host (or anything
// speaking the plugin protocol) can send. The five fields come from the
// fuzzer: ops as bytes, key and value lengths as little-endian uint32s,
// revisions as little-endian uint64s (a trailing partial chunk is dropped),
// and the data blob; pre and spare give dst a length and spare capacity.
//
// appendPacked must accept exactly the well-formed runs: four counts that
// agree, lengths that add up to the data, ops that are puts or deletes. It
// refuses the others and appends nothing: a batch is applied whole or not at
// all. What it accepts must give back each mutation at its declared length,
// laid end to end over the data, each key and value capped at its length so
// that a store appending to one cannot write over the next; packing it again
// must give the same run. Last, whatever mutations the inputs make, pack
// then appendPacked must give them back.
func FuzzAppendPacked(f *testing.F) {
	add := func(p *storepb.Packed, pre, spare uint8) {
		f.Add(p.Ops, le32(p.KeyLengths), le32(p.ValueLengths), le64(p.Revisions), p.Data, pre, spare)
	}
	one := []Mutation{{Op: OpPut, Key: []byte("k"), Value: []byte("v"), Revision: 1}}
	mixed := []Mutation{
		{Op: OpPut, Key: []byte("a"), Value: []byte("alpha"), Revision: 7},
		{Op: OpDelete, Key: []byte("b"), Revision: 8},
		{Op: OpPut, Key: []byte("c"), Value: nil, Revision: 9},
		{Op: OpPut, Key: nil, Value: []byte("keyless"), Revision: 1<<64 - 1},
	}
	// Well-formed runs.
	add(pack(nil), 0, 0)
	add(pack(one), 0, 0)
	add(pack(one), 2, 1) // dst with room for the run: appended in place
	add(pack(mixed), 1, 0)
	add(pack(manyMutations(12)), 0, 16)
	// Malformed runs.
	short := pack(mixed)
	short.Ops = short.Ops[:3] // counts that disagree
	add(short, 1, 4)
	long := pack(mixed)
	long.Data = append(long.Data, '!') // lengths short of the data
	add(long, 0, 8)
	over := pack(one)
	over.KeyLengths[0] = 1 << 31 // a length past the data
	add(over, 0, 0)
	wrap := pack(mixed)
	wrap.KeyLengths[0] += 1 << 31 // lengths that overflow uint32 but not uint64
	wrap.KeyLengths[1] += 1 << 31
	add(wrap, 0, 0)
	unknown := pack(mixed)
	unknown.Ops[3] = 9 // unknown op, after three good ones
	add(unknown, 0, 8)
	unspecified := pack(one)
	unspecified.Ops[0] = byte(storepb.Op_OP_UNSPECIFIED)
	add(unspecified, 3, 0)

	f.Fuzz(func(t *testing.T, ops, keyLens, valueLens, revs, data []byte, pre, spare uint8) {
		// Round trip: mutations cut from the inputs, packed and read back.
		ms := cutMutations(ops, keyLens, revs, data)
		back, err := appendPacked(nil, pack(ms))
		if err != nil {
			t.Fatalf("appendPacked(pack(%d mutations)): %v", len(ms), err)
		}
		checkSameMutations(t, back, ms)

		p := &storepb.Packed{
			Ops:          ops,
			KeyLengths:   un32(keyLens),
			ValueLengths: un32(valueLens),
			Revisions:    un64(revs),
			Data:         data,
		}
		dst := make([]Mutation, int(pre%4), int(pre%4)+int(spare%8))
		for i := range dst {
			dst[i] = Mutation{Op: OpPut, Key: []byte{'d', byte(i)}, Revision: uint64(i)}
		}
		before := cloneMutations(dst)
		dataBefore := bytes.Clone(data)

		out, err := appendPacked(dst, p)
		if !bytes.Equal(data, dataBefore) {
			t.Fatal("appendPacked changed the data")
		}
		if want := wellFormed(p); (err == nil) != want {
			t.Fatalf("appendPacked error %v for a run that is well-formed: %v (%d ops, %d/%d/%d lengths and revisions, %d bytes)",
				err, want, len(p.Ops), len(p.KeyLengths), len(p.ValueLengths), len(p.Revisions), len(p.Data))
		}
		if err != nil {
			if len(out) != len(dst) {
				t.Fatalf("refused run changed dst from %d to %d mutations", len(dst), len(out))
			}
			checkPrefix(t, out, before)
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(out) != len(dst)+len(ops) {
			t.Fatalf("%d mutations after %d in dst and %d ops", len(out), len(dst), len(ops))
		}
		checkPrefix(t, out, before)
		got := out[len(dst):]
		var joined []byte
		for i, m := range got {
			if len(m.Key) != int(p.KeyLengths[i]) || len(m.Value) != int(p.ValueLengths[i]) {
				t.Fatalf("mutation %d: key and value of %d and %d bytes, declared %d and %d",
					i, len(m.Key), len(m.Value), p.KeyLengths[i], p.ValueLengths[i])
			}
			if cap(m.Key) != len(m.Key) || cap(m.Value) != len(m.Value) {
				t.Fatalf("mutation %d: key cap %d len %d, value cap %d len %d: an append would write over the next",
					i, cap(m.Key), len(m.Key), cap(m.Value), len(m.Value))
			}
			if want := map[byte]Op{byte(storepb.Op_OP_PUT): OpPut, byte(storepb.Op_OP_DELETE): OpDelete}[ops[i]]; m.Op != want {
				t.Fatalf("mutation %d: op %d from wire op %d", i, m.Op, ops[i])
			}
			if m.Revision != p.Revisions[i] {
				t.Fatalf("mutation %d: revision %d, sent %d", i, m.Revision, p.Revisions[i])
			}
			joined = append(append(joined, m.Key...), m.Value...)
		}
		if !bytes.Equal(joined, data) {
			t.Fatalf("keys and values make %q, data is %q", joined, data)
		}
		checkSamePacked(t, pack(got), p)
	})
}

// wellFormed is what appendPacked must accept, worked out on its own.
func wellFormed(p *storepb.Packed) bool {
	n := len(p.Ops)
	if len(p.KeyLengths) != n || len(p.ValueLengths) != n || len(p.Revisions) != n {
		return false
	}
	var total uint64
	for i := range n {
		if p.Ops[i] != byte(storepb.Op_OP_PUT) && p.Ops[i] != byte(storepb.Op_OP_DELETE) {
			return false
		}
		total += uint64(p.KeyLengths[i]) + uint64(p.ValueLengths[i])
	}
	return total == uint64(len(p.Data))
}

// cutMutations makes mutations of any inputs: op i is a delete if ops[i] is
// odd, and its key and value are the next pieces of data, of lengths taken
// from lens modulo what is left.
func cutMutations(ops, lens, revs, data []byte) []Mutation {
	ms := make([]Mutation, len(ops))
	for i := range ms {
		take := func(j int) []byte {
			n := 0
			if j < len(lens) {
				n = int(lens[j]) % (len(data) + 1)
			}
			b := data[:n]
			data = data[n:]
			return b
		}
		ms[i] = Mutation{Op: OpPut, Key: take(2 * i), Value: take(2*i + 1)}
		if ops[i]&1 == 1 {
			ms[i].Op = OpDelete
		}
		if i < len(revs) {
			ms[i].Revision = uint64(revs[i]) << (8 * (i % 8))
		}
	}
	return ms
}

func checkPrefix(t *testing.T, out, before []Mutation) {
	t.Helper()
	if len(out) < len(before) {
		t.Fatalf("%d mutations, dst held %d", len(out), len(before))
	}
	checkSameMutations(t, out[:len(before)], before)
}

func checkSameMutations(t *testing.T, got, want []Mutation) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d mutations, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Op != w.Op || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || g.Revision != w.Revision {
			t.Fatalf("mutation %d is %+v, want %+v", i, g, w)
		}
	}
}

func checkSamePacked(t *testing.T, got, want *storepb.Packed) {
	t.Helper()
	if !bytes.Equal(got.Ops, want.Ops) || !bytes.Equal(le32(got.KeyLengths), le32(want.KeyLengths)) ||
		!bytes.Equal(le32(got.ValueLengths), le32(want.ValueLengths)) ||
		!bytes.Equal(le64(got.Revisions), le64(want.Revisions)) || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("packing the mutations again gives %v, want %v", got, want)
	}
}

func cloneMutations(ms []Mutation) []Mutation {
	out := make([]Mutation, len(ms))
	for i, m := range ms {
		out[i] = Mutation{Op: m.Op, Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value), Revision: m.Revision}
	}
	return out
}

func le32(v []uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

func le64(v []uint64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}

func un32(b []byte) []uint32 {
	var v []uint32
	for ; len(b) >= 4; b = b[4:] {
		v = append(v, binary.LittleEndian.Uint32(b))
	}
	return v
}

func un64(b []byte) []uint64 {
	var v []uint64
	for ; len(b) >= 8; b = b[8:] {
		v = append(v, binary.LittleEndian.Uint64(b))
	}
	return v
}

// pack is the run the host sends for ms of puts and deletes.
func pack(ms []Mutation) *storepb.Packed {
	return storepb.Pack(len(ms), func(i int) (storepb.Op, []byte, []byte, uint64) {
		op := storepb.Op_OP_PUT
		if ms[i].Op == OpDelete {
			op = storepb.Op_OP_DELETE
		}
		return op, ms[i].Key, ms[i].Value, ms[i].Revision
	})
}

// manyMutations is n mutations, every tenth a delete, values of 0 to 8191
// bytes.
func manyMutations(n int) []Mutation {
	ms := make([]Mutation, n)
	for i := range ms {
		ms[i] = Mutation{Op: OpPut, Key: fmt.Appendf(nil, "k%05d", i), Value: bytes.Repeat([]byte{byte(i)}, i%8192), Revision: uint64(i)}
		if i%10 == 0 {
			ms[i] = Mutation{Op: OpDelete, Key: ms[i].Key}
		}
	}
	return ms
}

// TestPackedSlicesDoNotOverlap appends to every key and value a store got
// from a packed run: none may write over its neighbour in the shared data.
func TestPackedSlicesDoNotOverlap(t *testing.T) {
	want := manyMutations(50)
	got, err := appendPacked(nil, pack(want))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].Key = append(got[i].Key, '!')
		got[i].Value = append(got[i].Value, '!')
	}
	for i := range got {
		k, v := got[i].Key, got[i].Value
		if !bytes.Equal(k[:len(k)-1], want[i].Key) || !bytes.Equal(v[:len(v)-1], want[i].Value) {
			t.Fatalf("mutation %d changed under appends to the others: key %q", i, k)
		}
	}
}
