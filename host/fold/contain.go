package fold

import (
	"fmt"
	"runtime/debug"
)

// PanicError is a panic caught in one of a fold's goroutines. The fold
// stalls with it as its reason and retries like after any failure; the
// process and the other folds go on.
type PanicError struct {
	// Where names the goroutine: "session", "applier" or "completer".
	Where string
	// Value is what was passed to panic.
	Value any
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("internal error in the fold's %s: panic: %v (stack in the log)", e.Where, e.Value)
}

// contain, deferred at the top of a fold goroutine, turns a panic into a
// *PanicError in *errp and logs the stack once.
func (f *Fold) contain(where string, errp *error) {
	r := recover()
	if r == nil {
		return
	}
	f.log.Error("internal error; the fold stalls and retries", "where", where, "panic", fmt.Sprint(r),
		"stack", string(debug.Stack()))
	*errp = &PanicError{Where: where, Value: r}
}
