// Package conformance is the suite every slipstream store backend must pass:
// the store contract of package sdk, stated as executable cases.
//
// A plugin author proves a binary with one test:
//
//	func TestConformance(t *testing.T) {
//		conformance.RunPlugin(t, "bin/slipstream-store-mine")
//	}
//
// or without Go tooling, with `slipstream conformance --plugin PATH`. Both
// run the same cases through the plugin's real process,
// including the cases that SIGKILL it in the middle of an Apply. Run with an
// InProcess target checks a store without a process boundary (faster to
// debug, and usable with the race detector); the cases that need to kill a
// process are skipped there.
//
// Mandatory cases run for every plugin. Optional cases check an optional
// interface of sdk.Store (Loader, Compacter, Snapshotter), and run only for
// a store that implements it. README.md lists every case and the fault it catches. The
// cases live in internal/conformance, which the slipstream binary runs
// without linking this package's test library; their own tests run each
// case against a store broken in exactly that way, so every case is known
// to fail when it should.
package conformance
