package transforms

import "strconv"

// Op is the operation a record carries.
type Op uint8

// The operations of ABI v1; the numbers are part of the ABI.
const (
	// OpPut sets the key to the record's value.
	OpPut Op = 1
	// OpDelete deletes the key. Guests see an empty value.
	OpDelete Op = 2
	// OpPurge deletes the key and its history. Guests see an empty value.
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

// valid reports whether o is one of the operations of ABI v1.
func (o Op) valid() bool { return o >= OpPut && o <= OpPurge }

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
