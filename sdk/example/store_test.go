package main

import (
	"testing"

	"github.com/slipstreamkv/slipstream/conformance"
	"github.com/slipstreamkv/slipstream/sdk"
)

// TestConformance runs the suite against the store in-process: the quickest
// loop while writing a store, and one the race detector can watch. The
// suite's cases that kill a process run against the built binary, with
// conformance.RunPlugin or `slipstream conformance --plugin PATH`.
func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.InProcess("example", func() sdk.Store { return &Store{} }))
}
