package conformance

import (
	"testing"

	"github.com/slipstreamkv/slipstream/internal/conformance"
	"github.com/slipstreamkv/slipstream/sdk"
	"pgregory.net/rapid"
)

// Target is a store under test: how the suite starts instances of it. Make
// one with Plugin or InProcess.
type Target = conformance.Target

// Plugin is the store plugin binary at path, run the way the host runs it:
// every instance is a new process, started and spoken to as the host does.
func Plugin(path string) Target { return conformance.Plugin(path) }

// InProcess is a store called directly, without a plugin process: newStore
// returns a new, closed store for every instance the suite starts, and the
// suite may Close and Open an instance again, as sdk.Serve allows. Such a
// store must itself return sdk.ErrClosed before Open and after Close, which
// sdk.Serve otherwise does for it. The cases that kill a store are skipped.
func InProcess(name string, newStore func() sdk.Store) Target {
	return conformance.InProcess(name, newStore)
}

// RunPlugin runs every case against the store plugin binary at path, as
// subtests of t. The binary is started, and killed, many times.
func RunPlugin(t *testing.T, path string) {
	t.Helper()
	Run(t, Plugin(path))
}

// Run runs every case against target, as subtests of t named after the
// cases (select some with -run). The model-based case is a
// pgregory.net/rapid property, so its -rapid.* flags apply and a failure
// shrinks to a short sequence of calls.
func Run(t *testing.T, target Target) {
	t.Helper()
	conformance.Run(t, target, rapidProperty)
}

// rapidProperty runs the model case's property with rapid.
func rapidProperty(t *testing.T, run func(conformance.Reporter, conformance.Drawer)) {
	rapid.Check(t, func(rt *rapid.T) { run(rt, rapidDrawer{rt}) })
}

// rapidDrawer draws the model run's choices from rapid, which shrinks them.
type rapidDrawer struct{ t *rapid.T }

func (d rapidDrawer) IntN(label string, n int) int { return rapid.IntRange(0, n-1).Draw(d.t, label) }
