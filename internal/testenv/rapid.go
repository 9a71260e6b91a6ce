package testenv

import (
	"flag"

	"pgregory.net/rapid"
)

// RapidFails reports whether rapid finds a counterexample to prop within a
// few runs of its default number of cases. Tests use it to prove that a
// property catches a deliberately broken implementation.
func RapidFails(prop func(*rapid.T)) bool {
	// An expected failure is not worth a fail file in the package's testdata.
	if f := flag.Lookup("rapid.nofailfile"); f != nil {
		old := f.Value.String()
		_ = f.Value.Set("true")
		defer func() { _ = f.Value.Set(old) }()
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
