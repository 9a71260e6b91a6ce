package transforms_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/sdk/abi"
	"github.com/slipstreamkv/slipstream/transforms"
)

// Answers in ABI v1's encoding, for the echo guest (testdata/echo.wat),
// which answers each put with its own value.

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func field(b []byte) []byte { return append(u32(uint32(len(b))), b...) }

func verdict(v uint32, body ...[]byte) []byte { return append(u32(v), bytes.Join(body, nil)...) }

// rewrite is a rewrite answer; nil key or value leaves that flag unset.
func rewrite(key, value []byte) []byte {
	var flags uint32
	var body []byte
	if key != nil {
		flags |= abi.FlagKey
		body = append(body, field(key)...)
	}
	if value != nil {
		flags |= abi.FlagValue
		body = append(body, field(value)...)
	}
	return verdict(abi.VerdictRewrite, u32(flags), body)
}

// batchFails is the verdict word that makes the echo guest fail a whole
// batch (and that record by record is an undefined verdict).
const batchFails = 0xfffffff0

// answerCase is one answer and what the host must make of it.
type answerCase struct {
	name   string
	answer []byte
	// want, given the record that carried the answer.
	want func(in sdk.Mutation) want
	// emptyError: the answer is an error with an empty message.
	emptyError bool
}

func withKey(r sdk.Mutation, k string) sdk.Mutation   { r.Key = []byte(k); return r }
func withValue(r sdk.Mutation, v []byte) sdk.Mutation { r.Value = v; return r }

var (
	bigKey   = bytes.Repeat([]byte("k"), 64<<10)
	bigValue = bytes.Repeat([]byte("v"), 4<<20)
)

// answerCases are every answer shape ABI v1 allows, at their edges, and the
// malformed answers next to them.
var answerCases = []answerCase{
	{name: "keep", answer: verdict(abi.VerdictKeep), want: kept},
	{name: "drop", answer: verdict(abi.VerdictDrop), want: func(sdk.Mutation) want { return dropped }},
	{name: "rewrite nothing", answer: rewrite(nil, nil), want: kept},
	{name: "rewrite key", answer: rewrite([]byte("new.key"), nil),
		want: func(in sdk.Mutation) want { return kept(withKey(in, "new.key")) }},
	{name: "rewrite empty value", answer: rewrite(nil, []byte{}),
		want: func(in sdk.Mutation) want { return kept(withValue(in, []byte{})) }},
	{name: "rewrite value", answer: rewrite(nil, []byte("v2")),
		want: func(in sdk.Mutation) want { return kept(withValue(in, []byte("v2"))) }},
	{name: "rewrite key and empty value", answer: rewrite([]byte("k2"), []byte{}),
		want: func(in sdk.Mutation) want { return kept(withValue(withKey(in, "k2"), []byte{})) }},
	{name: "rewrite key and value, large", answer: rewrite(bigKey, bigValue),
		want: func(in sdk.Mutation) want { return kept(withValue(withKey(in, string(bigKey)), bigValue)) }},
	{name: "error with a message", answer: verdict(abi.VerdictError, field([]byte("no thanks"))),
		want: func(sdk.Mutation) want { return failed("no thanks") }},
	{name: "error with an empty message", answer: verdict(abi.VerdictError, field(nil)), emptyError: true},

	{name: "undefined verdict", answer: verdict(9),
		want: func(sdk.Mutation) want { return failed("malformed answer: verdict 9 is not defined by ABI v1") }},
	{name: "rewrite without flags", answer: verdict(abi.VerdictRewrite),
		want: func(sdk.Mutation) want { return failed("malformed answer: truncated rewrite flags") }},
	{name: "undefined flag bits", answer: verdict(abi.VerdictRewrite, u32(4)),
		want: func(sdk.Mutation) want { return failed("set undefined bits") }},
	{name: "empty new key", answer: verdict(abi.VerdictRewrite, u32(abi.FlagKey), field(nil)),
		want: func(sdk.Mutation) want { return failed("malformed answer: empty new key") }},
	{name: "new value longer than the output", answer: verdict(abi.VerdictRewrite, u32(abi.FlagValue), u32(1000), []byte("short")),
		want: func(sdk.Mutation) want { return failed("malformed answer: truncated new value") }},
	{name: "error body truncated", answer: verdict(abi.VerdictError, []byte{1, 0}),
		want: func(sdk.Mutation) want { return failed("malformed answer: truncated error message") }},
	{name: "bytes after a rewrite", answer: append(rewrite(nil, []byte("x")), 7, 7),
		want: func(sdk.Mutation) want { return failed("malformed answer: 2 bytes follow the last answer") }},
	{name: "a batch failure word", answer: verdict(batchFails, []byte("whole batch")),
		want: func(sdk.Mutation) want { return failed("is not defined by ABI v1") }},
}

// echoModules are the echo guest with slipstream_batch (answers in batches)
// and without (one record at a time).
var echoModules = []string{"echo", "echo_record"}

// TestEveryAnswerShape sends every answer shape through the real host, one
// record at a time and in batches, alone and between good records, and
// checks what the host makes of it: honoured, or refused as malformed for
// that record alone, never a panic and never another record harmed.
func TestEveryAnswerShape(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	for _, mod := range echoModules {
		t.Run(mod, func(t *testing.T) {
			c := newChain(t, rt, transforms.Module{Name: mod, Path: wasm(mod)})
			keep := verdict(abi.VerdictKeep)
			for _, tc := range answerCases {
				t.Run(tc.name, func(t *testing.T) {
					recs := []sdk.Mutation{putBytes("a", keep), putBytes("b", tc.answer), putBytes("c", keep)}
					out := process(t, c, 20*time.Second, recs...)
					checkOutcome(t, mod, []byte("a"), out[0], kept(recs[0]))
					checkAnswer(t, mod, tc, recs[1], out[1])
					checkOutcome(t, mod, []byte("c"), out[2], kept(recs[2]))
					// Deletes and purges carry no value: the guest keeps them.
					out = process(t, c, 20*time.Second, del("b"), purge("b"))
					checkOutcome(t, mod, []byte("b"), out[0], kept(del("b")))
					checkOutcome(t, mod, []byte("b"), out[1], kept(purge("b")))
				})
			}
			// Every shape in one call: a batch module answers them in one
			// batch (refused as a whole by the malformed ones, then replayed
			// record by record); the outcomes are the same as alone.
			t.Run("all in one call", func(t *testing.T) {
				var recs []sdk.Mutation
				for i, tc := range answerCases {
					recs = append(recs, putBytes("k"+string(rune('a'+i)), tc.answer))
				}
				out := process(t, c, 60*time.Second, recs...)
				for i, tc := range answerCases {
					checkAnswer(t, mod, tc, recs[i], out[i])
				}
			})
		})
	}
}

// TestAnswersReferringToNoBytes is the regression test of a crash: a batch
// whose answers are all well-formed but refer to no output bytes (empty new
// values, empty error messages) made the host slice a nil output and panic,
// taking the process down, and again on every restart.
func TestAnswersReferringToNoBytes(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	for _, mod := range echoModules {
		t.Run(mod, func(t *testing.T) {
			c := newChain(t, rt, transforms.Module{Name: mod, Path: wasm(mod)})
			empty := rewrite(nil, []byte{})
			out := process(t, c, 20*time.Second, putBytes("a", empty), putBytes("b", empty), putBytes("c", empty))
			for i, k := range []string{"a", "b", "c"} {
				checkOutcome(t, mod, []byte(k), out[i], kept(putBytes(k, []byte{})))
			}
			silent := verdict(abi.VerdictError, field(nil))
			out = process(t, c, 20*time.Second, putBytes("a", silent), putBytes("b", silent))
			for i, k := range []string{"a", "b"} {
				checkAnswer(t, mod, answerCase{emptyError: true}, putBytes(k, silent), out[i])
			}
		})
	}
}

// TestLargestBatches fills batches to the host's record and byte limits
// with answers at their edges.
func TestLargestBatches(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c := newChain(t, rt, transforms.Module{Name: "echo", Path: wasm("echo")})
	var recs []sdk.Mutation
	for i := range 5000 { // more than one batch's 4096 records
		recs = append(recs, putBytes("k"+strings.Repeat("x", i%7), rewrite([]byte{'n', byte(i)}, nil)))
	}
	// Records near the 1 MiB batch limit, alone and side by side.
	half := rewrite(nil, bytes.Repeat([]byte("h"), 512<<10))
	recs = append(recs, putBytes("h1", half), putBytes("h2", half), putBytes("h3", half))
	out := process(t, c, 60*time.Second, recs...)
	for i := range 5000 {
		checkOutcome(t, "echo", recs[i].Key, out[i], kept(withKey(recs[i], string([]byte{'n', byte(i)}))))
	}
	for i := 5000; i < len(recs); i++ {
		checkOutcome(t, "echo", recs[i].Key, out[i], kept(withValue(recs[i], bytes.Repeat([]byte("h"), 512<<10))))
	}
}

func putBytes(key string, value []byte) sdk.Mutation {
	return sdk.Mutation{Op: sdk.OpPut, Key: []byte(key), Value: value, Revision: rev}
}

// checkAnswer checks the outcome of the record in that carried tc's answer.
func checkAnswer(t *testing.T, mod string, tc answerCase, in sdk.Mutation, got transforms.Outcome) {
	t.Helper()
	if !tc.emptyError {
		checkOutcome(t, mod, in.Key, got, tc.want(in))
		return
	}
	var ge *transforms.GuestError
	if !errors.As(got.Err, &ge) || got.Keep || ge.Reason != "" || ge.Module != mod {
		t.Fatalf("key %q: got %v (keep %v), want a GuestError of %s with an empty reason", in.Key, got.Err, got.Keep, mod)
	}
}
