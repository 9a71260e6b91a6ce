package store_test

import (
	"testing"

	"github.com/slipstreamkv/slipstream/conformance"
	"github.com/slipstreamkv/slipstream/plugins/pebble/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

// TestConformance runs the suite in-process, without the plugin boundary, so
// the race detector sees the store's own concurrency. The process-killing
// cases run against the plugin binary in package conformance.
func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.InProcess("pebble", func() sdk.Store { return store.New() }))
}
