package conformance

import (
	"testing"

	"pgregory.net/rapid"
)

// rapidProperty runs the model case's property with rapid, as package
// conformance's Run does, so that the suite's own runs shrink too.
func rapidProperty(t *testing.T, run func(Reporter, Drawer)) {
	rapid.Check(t, func(rt *rapid.T) { run(rt, rapidDraws{rt}) })
}

type rapidDraws struct{ t *rapid.T }

func (d rapidDraws) IntN(label string, n int) int { return rapid.IntRange(0, n-1).Draw(d.t, label) }
