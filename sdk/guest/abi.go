package guest

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/slipstreamkv/slipstream/sdk/abi"
)

// minBuffer keeps small requests from reallocating the buffers one by one.
const minBuffer = 4096

var (
	errNotRegistered = errors.New("no transform registered: call guest.Register from an init function")
	errOutsideInput  = errors.New("host passed a range outside the input buffer")
	errEmptyKey      = errors.New("transform returned an empty new key")
)

// module is the state behind the ABI exports: the registered transform, the
// input buffer the host writes to and the output of the last call. The
// wasip1 exports translate pointers; everything else is here so that it can
// be tested natively.
type module struct {
	t      Transform
	in     []byte // input buffer, handed out by alloc
	inBase uint32 // guest address of in[0], set by the export layer
	out    []byte // output of the last call
}

var mod = module{out: make([]byte, 0, minBuffer)}

// registered reports whether Register installed a transform.
func (m *module) registered() bool { return m.t.Record != nil }

// alloc returns an input buffer of at least size bytes, reusing the current
// one when it is large enough.
func (m *module) alloc(size uint32) []byte {
	if int(size) > len(m.in) {
		m.in = make([]byte, max(int(size), minBuffer))
	}
	return m.in
}

// input returns the n bytes at guest address ptr, which must lie inside the
// input buffer.
func (m *module) input(ptr, n uint32) ([]byte, bool) {
	if ptr < m.inBase {
		return nil, false
	}
	off := uint64(ptr - m.inBase)
	end := off + uint64(n)
	if end > uint64(len(m.in)) {
		return nil, false
	}
	return m.in[off:end:end], true
}

// fail replaces the output with an error body and returns the error status,
// which is also the error verdict of slipstream_record.
func (m *module) fail(err error) int32 {
	m.out = appendBytes(m.out[:0], []byte(err.Error()))
	return abi.StatusError
}

// init implements slipstream_init.
func (m *module) init(ptr, n uint32) int32 {
	m.out = m.out[:0]
	config, ok := m.input(ptr, n)
	if !ok {
		return m.fail(errOutsideInput)
	}
	if !m.registered() {
		return m.fail(errNotRegistered)
	}
	if m.t.Init != nil {
		if err := m.t.Init(config); err != nil {
			return m.fail(err)
		}
	}
	return abi.StatusOK
}

// record implements slipstream_record.
func (m *module) record(op, keyPtr, keyLen, valPtr, valLen uint32, revision uint64) int32 {
	m.out = m.out[:0]
	key, okKey := m.input(keyPtr, keyLen)
	value, okValue := m.input(valPtr, valLen)
	if !okKey || !okValue {
		return m.fail(errOutsideInput)
	}
	if !m.registered() {
		return m.fail(errNotRegistered)
	}
	var verdict int32
	m.out, verdict = appendAnswer(m.out, m.t.Record(Record{Op: Op(op), Key: key, Value: value, Revision: revision}))
	return verdict
}

// batch implements slipstream_batch.
func (m *module) batch(ptr, n uint32) int32 {
	m.out = m.out[:0]
	in, ok := m.input(ptr, n)
	if !ok {
		return m.fail(errOutsideInput)
	}
	if !m.registered() {
		return m.fail(errNotRegistered)
	}
	if len(in) < 4 {
		return m.fail(errors.New("batch shorter than its count"))
	}
	count := binary.LittleEndian.Uint32(in)
	in = in[4:]
	// The loop runs once per record: it keeps the output in a local and
	// answers keep without a call, as calls are costly in Go's wasm code.
	record, out := m.t.Record, m.out
	for i := range count {
		if len(in) < abi.BatchEntryHeader {
			return m.fail(batchError(i, "truncated header"))
		}
		r := Record{
			Op:       Op(binary.LittleEndian.Uint32(in)),
			Revision: binary.LittleEndian.Uint64(in[12:]),
		}
		keyLen := uint64(binary.LittleEndian.Uint32(in[4:]))
		end := keyLen + uint64(binary.LittleEndian.Uint32(in[8:]))
		in = in[abi.BatchEntryHeader:]
		if end > uint64(len(in)) {
			return m.fail(batchError(i, "truncated key or value"))
		}
		r.Key, r.Value, in = in[:keyLen:keyLen], in[keyLen:end:end], in[end:]

		res := record(r)
		if res.Err == nil && !res.Drop && res.Key == nil && res.Value == nil {
			out = append(out, abi.VerdictKeep, 0, 0, 0)
			continue
		}
		at := len(out)
		out = append(out, 0, 0, 0, 0)
		var verdict int32
		out, verdict = appendAnswer(out, res)
		binary.LittleEndian.PutUint32(out[at:], uint32(verdict))
	}
	m.out = out
	if len(in) != 0 {
		return m.fail(errors.New("batch has " + strconv.Itoa(len(in)) + " bytes after its " + strconv.FormatUint(uint64(count), 10) + " records"))
	}
	return abi.StatusOK
}

// appendAnswer appends the body of answer res to out and returns the
// verdict.
func appendAnswer(out []byte, res Result) ([]byte, int32) {
	switch {
	case res.Err != nil:
		return appendBytes(out, []byte(res.Err.Error())), abi.VerdictError
	case res.Drop:
		return out, abi.VerdictDrop
	case res.Key == nil && res.Value == nil:
		return out, abi.VerdictKeep
	case res.Key != nil && len(res.Key) == 0:
		return appendBytes(out, []byte(errEmptyKey.Error())), abi.VerdictError
	}
	var flags uint32
	if res.Key != nil {
		flags |= abi.FlagKey
	}
	if res.Value != nil {
		flags |= abi.FlagValue
	}
	out = binary.LittleEndian.AppendUint32(out, flags)
	if res.Key != nil {
		out = appendBytes(out, res.Key)
	}
	if res.Value != nil {
		out = appendBytes(out, res.Value)
	}
	return out, abi.VerdictRewrite
}

// batchError describes a malformed record of a batch.
func batchError(i uint32, what string) error {
	return errors.New("batch record " + strconv.FormatUint(uint64(i), 10) + ": " + what)
}

// appendBytes appends b with its u32 length prefix.
func appendBytes(dst, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}
