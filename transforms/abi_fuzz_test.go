package transforms

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/sdk/abi"
)

// The fuzz targets below feed the ABI v1 decoders every output a guest can
// produce and use each decoded answer as the chain does (stage.apply). The
// host must either honour an answer or refuse it as malformed: a panic, a
// refusal of another kind, or an answer pointing outside what was kept is a
// bug. Seeds live in testdata/fuzz; make fuzz runs each target for a while.

// fuzzSeeds are answer bodies at the edges of ABI v1, well-formed and not.
func fuzzSeeds() [][]byte {
	u := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return [][]byte{
		nil,
		u(abi.VerdictKeep),
		u(abi.VerdictDrop),
		cat(u(abi.VerdictRewrite), u(0)),
		cat(u(abi.VerdictRewrite), u(abi.FlagValue), u(0)),
		cat(u(abi.VerdictRewrite), u(abi.FlagKey|abi.FlagValue), u(1), []byte("k"), u(0)),
		cat(u(abi.VerdictRewrite), u(abi.FlagKey), u(0)),
		cat(u(abi.VerdictRewrite), u(abi.FlagValue), u(0xffffffff)),
		cat(u(abi.VerdictError), u(0)),
		cat(u(abi.VerdictError), u(3), []byte("bad")),
		cat(u(abi.VerdictError), u(0xfffffffc)),
		cat(u(7), u(0)),
	}
}

// checkApplied uses a decoded answer as the chain does, on a put and on a
// delete, and checks what comes out refers only to kept bytes.
func checkApplied(t *testing.T, a answer, kept []byte) {
	for _, s := range []span{a.key, a.value, a.message} {
		if s.n > 0 && uint64(s.off)+uint64(s.n) > uint64(len(kept)) {
			t.Fatalf("answer %+v refers to [%d, %d+%d) of %d kept bytes", a, s.off, s.off, s.n, len(kept))
		}
	}
	st := &stage{name: "fuzz"}
	for _, op := range []sdk.Op{sdk.OpPut, sdk.OpDelete} {
		o := Outcome{Record: sdk.Mutation{Op: op, Key: []byte("key"), Value: []byte("value"), Revision: 1}, Keep: true}
		st.apply(&o, a, kept)
		switch a.verdict {
		case abi.VerdictKeep:
			if !o.Keep || o.Err != nil {
				t.Fatalf("keep answer gave %+v", o)
			}
		case abi.VerdictDrop:
			if o.Keep || o.Err != nil {
				t.Fatalf("drop answer gave %+v", o)
			}
		case abi.VerdictError:
			var ge *GuestError
			if o.Keep || !errors.As(o.Err, &ge) {
				t.Fatalf("error answer gave %+v", o)
			}
		case abi.VerdictRewrite:
			if !o.Keep || o.Err != nil || len(o.Record.Key) == 0 || (op == sdk.OpPut && o.Record.Value == nil) {
				t.Fatalf("rewrite answer gave %+v", o)
			}
		default:
			t.Fatalf("decoded undefined verdict %d without refusing it", a.verdict)
		}
	}
}

func checkRefusal(t *testing.T, err error) {
	var f *failure
	if !errors.As(err, &f) {
		t.Fatalf("decoder failed with %T %v, want a malformed-answer failure", err, err)
	}
}

// FuzzDecodeBatch decodes a slipstream_batch output for a batch of n+1
// records.
func FuzzDecodeBatch(f *testing.F) {
	seeds := fuzzSeeds()
	for i, s := range seeds {
		f.Add(uint16(0), s) // n+1 answers
		f.Add(uint16(1), bytes.Join([][]byte{s, seeds[(i+1)%len(seeds)]}, nil))
	}
	f.Fuzz(func(t *testing.T, n uint16, out []byte) {
		ans := make([]answer, int(n%maxBatchRecords)+1)
		view := bytes.Clone(out)
		kept, err := decodeBatchOutput(view, ans)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		clear(view) // the guest's memory moves on; only kept may be used
		for _, a := range ans {
			checkApplied(t, a, kept)
		}
	})
}

// FuzzDecodeRecord decodes the output of a slipstream_record call that
// answered verdict v.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range fuzzSeeds() {
		if len(s) >= 4 {
			f.Add(binary.LittleEndian.Uint32(s), s[4:])
		}
	}
	f.Fuzz(func(t *testing.T, v uint32, out []byte) {
		a, err := decodeOne(v, out)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		checkApplied(t, a, bytes.Clone(out))
	})
}

// FuzzErrorBody decodes the error body of an init, record or batch call
// that returned the error status, as instance.message does.
func FuzzErrorBody(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		a, err := decodeOne(abi.VerdictError, out)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if msg := a.message.of(out); len(msg) != len(out)-4 {
			t.Fatalf("message of %d bytes from an error body of %d", len(msg), len(out))
		}
	})
}
