package transforms

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strconv"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/sdk/abi"
	"github.com/tetratelabs/wazero/api"
)

// Names, types and numbers of ABI v1; ABI.md is the reference.
const (
	exportMarker = "slipstream_abi_v1"
	exportMemory = "memory"
	exportAlloc  = "slipstream_alloc"
	exportOutput = "slipstream_output"
	exportInit   = "slipstream_init"
	exportRecord = "slipstream_record"
	exportBatch  = "slipstream_batch"

	wasiModule = "wasi_snapshot_preview1"

	// maxBatchRecords and maxBatchBytes bound one slipstream_batch call.
	maxBatchRecords = 4096
	maxBatchBytes   = 1 << 20
)

// signature is the wasm type of an ABI function.
type signature struct {
	params, results []api.ValueType
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// abiFunctions lists the function exports of ABI v1 with their types.
var abiFunctions = []struct {
	name     string
	sig      signature
	required bool
}{
	{exportMarker, signature{}, true},
	{exportAlloc, signature{[]api.ValueType{i32}, []api.ValueType{i32}}, true},
	{exportOutput, signature{nil, []api.ValueType{i64}}, true},
	{exportInit, signature{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, true},
	{exportRecord, signature{[]api.ValueType{i32, i32, i32, i32, i32, i64}, []api.ValueType{i32}}, true},
	{exportBatch, signature{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, false},
}

// String renders the signature like "(i32, i32) -> (i32)".
func (s signature) String() string {
	return typeList(s.params) + " -> " + typeList(s.results)
}

func typeList(ts []api.ValueType) string {
	s := "("
	for i, t := range ts {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(t)
	}
	return s + ")"
}

func (s signature) matches(def api.FunctionDefinition) bool {
	return slices.Equal(s.params, def.ParamTypes()) && slices.Equal(s.results, def.ResultTypes())
}

// answer is one module's decision on one record. It refers to the bytes
// of a new key, a new value or an error message by their place in the
// output of the call, so that answers hold no pointers and decoding a batch
// allocates nothing.
type answer struct {
	verdict uint32
	flags   uint32 // of a rewrite
	key     span   // of a rewrite with abi.FlagKey
	value   span   // of a rewrite with abi.FlagValue
	message span   // of an error
}

// span is a range of a call's output.
type span struct{ off, n uint32 }

// of returns the span's bytes of out. An empty span is an empty, non-nil
// value whatever out is: a batch whose answers refer to no bytes keeps no
// copy of its output, and an empty new value must stay a value.
func (s span) of(out []byte) []byte {
	if s.n == 0 {
		return []byte{}
	}
	return out[s.off : s.off+s.n : s.off+s.n]
}

// refers reports whether the answer refers to bytes of the output.
func (a answer) refers() bool { return a.key.n+a.value.n+a.message.n > 0 }

// decodeBatchOutput decodes a batch output into ans and returns what the
// answers' spans refer to: a copy of out when any answer refers to bytes
// of it (out itself is a view of guest memory, valid only until the next
// call), nil when none does.
func decodeBatchOutput(out []byte, ans []answer) ([]byte, error) {
	if err := decodeBatch(out, ans); err != nil {
		return nil, err
	}
	// Keep-all and filter answers refer to nothing: copy only when needed.
	for _, a := range ans {
		if a.refers() {
			return bytes.Clone(out), nil
		}
	}
	return nil, nil
}

// batchSize returns how many of the records out[idx[0]], out[idx[1]], …
// (at least one) go into the next batch, and the size of their encoding.
func batchSize(out []Outcome, idx []int) (n int, size uint64) {
	size = 4
	for n < len(idx) && n < maxBatchRecords {
		r := &out[idx[n]].Record
		next := size + abi.BatchEntryHeader + uint64(len(r.Key)) + uint64(len(guestValue(r)))
		if n > 0 && next > maxBatchBytes {
			break
		}
		size = next
		n++
	}
	return n, size
}

// guestValue is the value a guest sees: empty unless the record is a put.
func guestValue(r *sdk.Mutation) []byte {
	if r.Op != sdk.OpPut {
		return nil
	}
	return r.Value
}

// encodeBatch writes the batch input for the records out[i], i in idx,
// into dst, which has the size batchSize returned.
func encodeBatch(dst []byte, out []Outcome, idx []int) {
	binary.LittleEndian.PutUint32(dst, uint32(len(idx)))
	dst = dst[4:]
	for _, i := range idx {
		r := &out[i].Record
		v := guestValue(r)
		op, _ := abiOp(r.Op) // Process checked it
		binary.LittleEndian.PutUint32(dst, uint32(op))
		binary.LittleEndian.PutUint32(dst[4:], uint32(len(r.Key)))
		binary.LittleEndian.PutUint32(dst[8:], uint32(len(v)))
		binary.LittleEndian.PutUint64(dst[12:], r.Revision)
		dst = dst[abi.BatchEntryHeader:]
		dst = dst[copy(dst, r.Key):]
		dst = dst[copy(dst, v):]
	}
}

// decoder reads answers from the output of a call.
type decoder struct {
	out []byte
	pos uint32
}

// decodeBatch decodes a batch output holding one result entry per answer.
func decodeBatch(out []byte, ans []answer) error {
	d := decoder{out: out}
	for i := range ans {
		v, ok := d.u32()
		if !ok {
			return malformed("batch output ends after " + strconv.Itoa(i) + " of " + strconv.Itoa(len(ans)) + " results")
		}
		var err error
		if ans[i], err = d.body(v); err != nil {
			return err
		}
	}
	return d.end()
}

// decodeOne decodes the output of a slipstream_record call that answered v.
func decodeOne(v uint32, out []byte) (answer, error) {
	d := decoder{out: out}
	a, err := d.body(v)
	if err == nil {
		err = d.end()
	}
	return a, err
}

// end fails unless the whole output was read.
func (d *decoder) end() error {
	if rest := len(d.out) - int(d.pos); rest != 0 {
		return malformed(strconv.Itoa(rest) + " bytes follow the last answer")
	}
	return nil
}

func (d *decoder) u32() (uint32, bool) {
	if len(d.out)-int(d.pos) < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(d.out[d.pos:])
	d.pos += 4
	return v, true
}

// field reads a u32 length and skips that many bytes.
func (d *decoder) field() (span, bool) {
	n, ok := d.u32()
	if !ok || uint64(n) > uint64(len(d.out))-uint64(d.pos) {
		return span{}, false
	}
	s := span{d.pos, n}
	d.pos += n
	return s, true
}

// body decodes what follows verdict v.
func (d *decoder) body(v uint32) (answer, error) {
	a := answer{verdict: v}
	var ok bool
	switch v {
	case abi.VerdictKeep, abi.VerdictDrop:
		return a, nil
	case abi.VerdictError:
		if a.message, ok = d.field(); !ok {
			return a, malformed("truncated error message")
		}
		return a, nil
	case abi.VerdictRewrite:
	default:
		return a, malformed("verdict " + strconv.FormatUint(uint64(v), 10) + " is not defined by ABI v1")
	}
	if a.flags, ok = d.u32(); !ok {
		return a, malformed("truncated rewrite flags")
	}
	if a.flags&^(abi.FlagKey|abi.FlagValue) != 0 {
		return a, malformed("rewrite flags 0b" + strconv.FormatUint(uint64(a.flags), 2) + " set undefined bits")
	}
	if a.flags&abi.FlagKey != 0 {
		if a.key, ok = d.field(); !ok {
			return a, malformed("truncated new key")
		}
		if a.key.n == 0 {
			return a, malformed("empty new key")
		}
	}
	if a.flags&abi.FlagValue != 0 {
		if a.value, ok = d.field(); !ok {
			return a, malformed("truncated new value")
		}
	}
	return a, nil
}
