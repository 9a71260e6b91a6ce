package transforms

import (
	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/sdk/abi"
)

// A chain takes the host's one record type, sdk.Mutation, with OpPut,
// OpDelete or OpPurge; a delete's or purge's value is ignored and shown to
// guests as empty.

// abiOp is op in ABI v1's numbers: the one place the host's record meets
// the ABI's encoding. It reports false for an op the ABI has no number for.
func abiOp(op sdk.Op) (abi.Op, bool) {
	switch op {
	case sdk.OpPut:
		return abi.OpPut, true
	case sdk.OpDelete:
		return abi.OpDelete, true
	case sdk.OpPurge:
		return abi.OpPurge, true
	}
	return 0, false
}

// Outcome is what a chain made of one record.
type Outcome struct {
	// Record is the record to fold when Keep is true: the input with any key
	// and value rewrites of the chain applied (a delete or purge keeps its
	// value; only its key can be rewritten). Otherwise it is the input
	// record unchanged.
	Record sdk.Mutation
	// Keep reports that every module kept or rewrote the record. False with
	// a nil Err means a module dropped it: nothing is folded.
	Keep bool
	// Err is a *GuestError when a module failed on the record: nothing is
	// folded.
	Err error
}
