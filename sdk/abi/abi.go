// Package abi holds the numbers of the slipstream transform ABI v1 that both
// sides share: the host runtime (package transforms) and the Go guest SDK
// (package sdk/guest). transforms/ABI.md is the reference; a guest in
// another language copies these numbers from there.
package abi

import "strconv"

// Op is the operation a record carries.
type Op uint8

// The operations of ABI v1.
const (
	// OpPut sets the key to the record's value.
	OpPut Op = 1
	// OpDelete deletes the key; the record's value is empty.
	OpDelete Op = 2
	// OpPurge deletes the key and its history; the record's value is empty.
	OpPurge Op = 3
)

// String returns "put", "delete", "purge", or the number of an unknown op.
func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpPurge:
		return "purge"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Verdicts a guest answers for one record.
const (
	VerdictKeep    = 0
	VerdictDrop    = 1
	VerdictRewrite = 2
	VerdictError   = 3
)

// StatusOK and StatusError are what slipstream_init and slipstream_batch
// return.
const (
	StatusOK    = 0
	StatusError = 3
)

// Flags of a rewrite: which of key and value the guest replaced.
const (
	FlagKey   = 1
	FlagValue = 2
)

// BatchEntryHeader is the size of a batched record's header: op, key_len
// and val_len (u32 each) and revision (u64).
const BatchEntryHeader = 20
