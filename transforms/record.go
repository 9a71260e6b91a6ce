package transforms

import "github.com/slipstreamkv/slipstream/sdk/abi"

// Op is the operation a record carries; the numbers are part of the ABI.
type Op = abi.Op

// The operations of ABI v1.
const (
	// OpPut sets the key to the record's value.
	OpPut = abi.OpPut
	// OpDelete deletes the key. Guests see an empty value.
	OpDelete = abi.OpDelete
	// OpPurge deletes the key and its history. Guests see an empty value.
	OpPurge = abi.OpPurge
)

// Record is one KV update.
type Record struct {
	Op       Op
	Key      []byte
	Value    []byte // ignored, and shown to guests as empty, unless Op is OpPut
	Revision uint64
}

// Outcome is what a chain made of one record.
type Outcome struct {
	// Record is the record to fold when Keep is true: the input with any key
	// and value rewrites of the chain applied (a delete or purge keeps its
	// value; only its key can be rewritten). Otherwise it is the input
	// record unchanged.
	Record Record
	// Keep reports that every module kept or rewrote the record. False with
	// a nil Err means a module dropped it: nothing is folded.
	Keep bool
	// Err is a *GuestError when a module failed on the record: nothing is
	// folded.
	Err error
}
