package guest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/slipstreamkv/slipstream/sdk/abi"
)

// base is the guest address the tests pretend the input buffer is at.
const base = 1 << 16

// testModule returns a module running rec, with an input buffer holding in.
func testModule(t *testing.T, rec func(Record) Result, in []byte) *module {
	t.Helper()
	m := &module{t: Transform{Record: rec}, inBase: base}
	copy(m.alloc(uint32(len(in))), in)
	return m
}

// sample answers by the key's first byte: d drops, k rekeys, v replaces the
// value, b does both, e fails, z returns an empty key; others are kept.
func sample(r Record) Result {
	switch r.Key[0] {
	case 'd':
		return Result{Drop: true}
	case 'k':
		return Result{Key: append([]byte("new."), r.Key...)}
	case 'v':
		return Result{Value: []byte(r.Op.String() + ":" + string(r.Value))}
	case 'b':
		return Result{Key: []byte("both"), Value: []byte{}}
	case 'e':
		return Result{Err: errors.New("bad " + string(r.Key))}
	case 'z':
		return Result{Key: []byte{}}
	}
	return Result{}
}

type rec struct {
	op         Op
	key, value string
	revision   uint64
}

func encodeBatch(recs []rec) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(recs)))
	for _, r := range recs {
		b = binary.LittleEndian.AppendUint32(b, uint32(r.op))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.key)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.value)))
		b = binary.LittleEndian.AppendUint64(b, r.revision)
		b = append(append(b, r.key...), r.value...)
	}
	return b
}

// field appends a u32 length and s.
func field(b []byte, s string) []byte {
	return append(binary.LittleEndian.AppendUint32(b, uint32(len(s))), s...)
}

func u32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

func TestBatch(t *testing.T) {
	in := encodeBatch([]rec{
		{OpPut, "a", "1", 1},
		{OpPut, "d", "1", 2},
		{OpDelete, "k.x", "", 3},
		{OpPut, "v", "old", 4},
		{OpPurge, "b", "", 5},
		{OpPut, "e1", "", 6},
		{OpPut, "z", "", 7},
	})
	m := testModule(t, sample, in)
	if status := m.batch(base, uint32(len(in))); status != abi.StatusOK {
		t.Fatalf("status %d, output %q", status, m.out)
	}
	var want []byte
	want = u32(want, abi.VerdictKeep)
	want = u32(want, abi.VerdictDrop)
	want = field(u32(u32(want, abi.VerdictRewrite), abi.FlagKey), "new.k.x")
	want = field(u32(u32(want, abi.VerdictRewrite), abi.FlagValue), "put:old")
	want = field(field(u32(u32(want, abi.VerdictRewrite), abi.FlagKey|abi.FlagValue), "both"), "")
	want = field(u32(want, abi.VerdictError), "bad e1")
	want = field(u32(want, abi.VerdictError), errEmptyKey.Error())
	if !bytes.Equal(m.out, want) {
		t.Fatalf("output\n%q\nwant\n%q", m.out, want)
	}
}

func TestRecord(t *testing.T) {
	tests := []struct {
		key, value string
		verdict    int32
		out        []byte
	}{
		{"a", "1", abi.VerdictKeep, nil},
		{"d", "1", abi.VerdictDrop, nil},
		{"k", "1", abi.VerdictRewrite, field(u32(nil, abi.FlagKey), "new.k")},
		{"v", "xy", abi.VerdictRewrite, field(u32(nil, abi.FlagValue), "put:xy")},
		{"e", "", abi.VerdictError, field(nil, "bad e")},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			m := testModule(t, sample, []byte(tt.key+tt.value))
			v := m.record(uint32(OpPut), base, uint32(len(tt.key)), base+uint32(len(tt.key)), uint32(len(tt.value)), 9)
			if v != tt.verdict || !bytes.Equal(m.out, tt.out) {
				t.Fatalf("verdict %d output %q, want %d %q", v, m.out, tt.verdict, tt.out)
			}
		})
	}
}

// TestBadInput checks that what the host passes is checked, not trusted.
func TestBadInput(t *testing.T) {
	valid := encodeBatch([]rec{{OpPut, "a", "1", 1}})
	tests := []struct {
		name string
		call func(m *module) int32
		want string
	}{
		{"record below the buffer", func(m *module) int32 { return m.record(1, base-1, 1, base, 0, 0) }, errOutsideInput.Error()},
		{"record past the buffer", func(m *module) int32 { return m.record(1, base, 1, base+uint32(len(m.in)), 1, 0) }, errOutsideInput.Error()},
		{"batch past the buffer", func(m *module) int32 { return m.batch(base, uint32(len(m.in))+1) }, errOutsideInput.Error()},
		{"init past the buffer", func(m *module) int32 { return m.init(base+uint32(len(m.in)), 1) }, errOutsideInput.Error()},
		{"batch without count", func(m *module) int32 { return m.batch(base, 2) }, "batch shorter than its count"},
		{"truncated header", func(m *module) int32 { return m.batch(base, 10) }, "batch record 0: truncated header"},
		{"truncated value", func(m *module) int32 { return m.batch(base, uint32(len(valid))-1) }, "batch record 0: truncated key or value"},
		{"trailing bytes", func(m *module) int32 { return m.batch(base, uint32(len(valid))+2) }, "batch has 2 bytes after its 1 records"},
		{"not registered", func(m *module) int32 {
			m.t.Record = nil
			return m.batch(base, uint32(len(valid)))
		}, errNotRegistered.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testModule(t, sample, valid)
			if v := tt.call(m); v != abi.StatusError || !bytes.Equal(m.out, field(nil, tt.want)) {
				t.Fatalf("status %d output %q, want error %q", v, m.out, tt.want)
			}
		})
	}
}

func TestInit(t *testing.T) {
	config := []byte(`{"n":1}`)
	m := testModule(t, sample, config)
	if v := m.init(base, uint32(len(config))); v != abi.StatusOK {
		t.Fatalf("init without Init: status %d", v)
	}
	var got string
	m.t.Init = func(c []byte) error {
		got = string(c)
		return errors.New("refused")
	}
	if v := m.init(base, uint32(len(config))); v != abi.StatusError || !bytes.Equal(m.out, field(nil, "refused")) {
		t.Fatalf("status %d output %q, want the refusal", v, m.out)
	}
	if got != string(config) {
		t.Fatalf("Init got %q, want %q", got, config)
	}
}

func TestAllocReuses(t *testing.T) {
	var m module
	a := m.alloc(10)
	if len(a) < minBuffer {
		t.Fatalf("alloc(10) = %d bytes, want at least %d", len(a), minBuffer)
	}
	if b := m.alloc(minBuffer); &b[0] != &a[0] {
		t.Fatal("alloc within capacity reallocated")
	}
	if c := m.alloc(minBuffer + 1); len(c) < minBuffer+1 {
		t.Fatalf("alloc(%d) = %d bytes", minBuffer+1, len(c))
	}
}

func TestDecodeConfig(t *testing.T) {
	type cfg struct {
		A int `json:"a"`
	}
	tests := []struct {
		in   string
		want string // error substring, "" for success
	}{
		{`{"a":1}`, ""},
		{``, ""},
		{` `, ""},
		{`{"b":1}`, `unknown field "b"`},
		{`{"a":1} {}`, "trailing data"},
		{`{"a":"x"}`, "cannot unmarshal string"},
	}
	for _, tt := range tests {
		var c cfg
		err := DecodeConfig([]byte(tt.in), &c)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("DecodeConfig(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestRegister(t *testing.T) {
	saved := mod
	t.Cleanup(func() { mod = saved })
	mustPanic := func(what string, tr Transform) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("Register %s did not panic", what)
			}
		}()
		Register(tr)
	}

	mod = module{}
	mustPanic("with a nil Record", Transform{})
	if mod.registered() {
		t.Fatal("a nil Record was registered")
	}
	Register(Transform{Record: sample})
	if !mod.registered() {
		t.Fatal("Register did not install the transform")
	}
	mustPanic("twice", Transform{Record: sample})
}
