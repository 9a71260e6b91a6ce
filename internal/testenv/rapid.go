package testenv

import (
	"flag"
	"strconv"

	"pgregory.net/rapid"
)

// RapidFails reports whether rapid finds a counterexample to prop within
// five runs of checks cases each. Tests use it to prove that a property
// catches a deliberately broken implementation; a rare counterexample needs
// more cases than a passing property is given.
func RapidFails(checks int, prop func(*rapid.T)) bool {
	// An expected failure is not worth a fail file in the package's testdata.
	for name, value := range map[string]string{"rapid.nofailfile": "true", "rapid.checks": strconv.Itoa(checks)} {
		if f := flag.Lookup(name); f != nil {
			old := f.Value.String()
			_ = f.Value.Set(value)
			defer func() { _ = f.Value.Set(old) }()
		}
	}
	for range 5 {
		r := &recorder{}
		func() {
			defer func() {
				if v := recover(); v != nil && v != errStop {
					panic(v)
				}
			}()
			rapid.Check(r, prop)
		}()
		if r.failed {
			return true
		}
	}
	return false
}

var errStop = &struct{ s string }{"recorder stop"}

// recorder is a rapid.TB that remembers failure instead of failing a test.
type recorder struct{ failed bool }

func (r *recorder) Helper()               {}
func (r *recorder) Name() string          { return "mutation" }
func (r *recorder) Logf(string, ...any)   {}
func (r *recorder) Log(...any)            {}
func (r *recorder) Skipf(string, ...any)  { panic(errStop) }
func (r *recorder) Skip(...any)           { panic(errStop) }
func (r *recorder) SkipNow()              { panic(errStop) }
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Error(...any)          { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(errStop) }
func (r *recorder) Fatal(...any)          { r.failed = true; panic(errStop) }
func (r *recorder) FailNow()              { r.failed = true; panic(errStop) }
func (r *recorder) Fail()                 { r.failed = true }
func (r *recorder) Failed() bool          { return r.failed }
