package transforms

import "strconv"

// GuestError is a module's failure on one record: a trap, an exit, a
// deadline, memory exhaustion, a malformed answer or an error the module
// reported. Nothing is folded for the record.
type GuestError struct {
	// Module is the name of the module in the chain.
	Module string
	// Key is the key of the record as it entered the chain, so it names the
	// entry in the bucket even when an earlier module renamed it.
	Key []byte
	// Reason says what went wrong, including the module's own message or
	// the first line it wrote to stderr.
	Reason string
}

// Error returns `transform[NAME] key "KEY": REASON`.
func (e *GuestError) Error() string {
	return "transform[" + e.Module + "] key " + strconv.Quote(string(e.Key)) + ": " + e.Reason
}
