// Package guest is the Go SDK for slipstream transforms: WebAssembly modules
// that filter, rename or reshape KV records before slipstream folds them.
//
// A transform registers itself from an init function and is built as a WASI
// reactor:
//
//	//go:build wasip1
//
//	package main
//
//	import "github.com/slipstreamkv/slipstream/sdk/guest"
//
//	func init() {
//		guest.Register(guest.Transform{
//			Record: func(r guest.Record) guest.Result {
//				if bytes.HasPrefix(r.Key, []byte("tmp.")) {
//					return guest.Result{Drop: true}
//				}
//				return guest.Result{}
//			},
//		})
//	}
//
//	func main() {}
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o x.wasm .
//
// The package provides every export of slipstream ABI v1 (transforms/ABI.md),
// including the batched entry point, so a transform only supplies Go
// functions. The exports exist only when building for wasip1; on other
// platforms the package holds the types, Register and DecodeConfig, which
// lets transform logic be unit-tested natively by calling its functions.
//
// A transform must be a pure function of its configuration and the record:
// the host may replay records and replaces the instance, and so its state,
// after any failure. A panic traps the instance; the host reports the panic
// message and starts a fresh instance.
package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/slipstreamkv/slipstream/sdk/abi"
)

// Op is the operation a record carries.
type Op = abi.Op

// The operations of ABI v1.
const (
	// OpPut sets the key to the record's value.
	OpPut = abi.OpPut
	// OpDelete deletes the key; the record's value is empty.
	OpDelete = abi.OpDelete
	// OpPurge deletes the key and its history; the record's value is empty.
	OpPurge = abi.OpPurge
)

// Record is one KV update handed to a transform. Key and Value point into a
// buffer the host overwrites after the call: copy them to keep them.
type Record struct {
	Op       Op
	Key      []byte
	Value    []byte // empty for OpDelete and OpPurge
	Revision uint64
}

// Result is a transform's answer for one record. The zero Result keeps the
// record unchanged. Err takes precedence over Drop, and Drop over Key and
// Value. The SDK copies Key, Value and the error message before the next
// record, so they may point into reused buffers.
type Result struct {
	// Err fails the record: nothing is folded for it, and the host reports
	// the message with the module name and the key.
	Err error
	// Drop discards the record: nothing is folded for it.
	Drop bool
	// Key, when non-nil, replaces the record's key. It must be non-empty and
	// a function of the old key alone, so that deletes of a key map to the
	// same new key as its puts.
	Key []byte
	// Value, when non-nil, replaces the value of a put. It is ignored for
	// deletes and purges.
	Value []byte
}

// Transform is what a module registers.
type Transform struct {
	// Init receives the module's configuration as a JSON object (the
	// module's TOML table) once per instance, before any record. A non-nil
	// error refuses the configuration and the host refuses the chain. config
	// is only valid during the call. Init may be nil, in which case any
	// configuration is accepted.
	Init func(config []byte) error
	// Record transforms one record. It must not be nil.
	Record func(Record) Result
}

// Register installs the module's transform. Call it exactly once, from an
// init function of package main; it panics on a second call or a nil Record.
func Register(t Transform) {
	if t.Record == nil {
		panic("guest: Register with a nil Transform.Record")
	}
	if mod.registered() {
		panic("guest: Register called twice")
	}
	mod.t = t
}

// DecodeConfig decodes the configuration passed to Init into v, strictly:
// unknown keys and trailing data are errors. An empty configuration decodes
// as {}.
func DecodeConfig(config []byte, v any) error {
	if len(bytes.TrimSpace(config)) == 0 {
		config = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("config: " + err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("config: trailing data after the JSON object")
	}
	return nil
}
