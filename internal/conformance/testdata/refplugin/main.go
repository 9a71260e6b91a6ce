// Command refplugin is the conformance suite's reference store served as a
// plugin: the suite's tests run the cases that need a process (a kill in
// the middle of a call) and cross the sdk's gRPC boundary against it. The
// suite's tests build it.
package main

import (
	"github.com/slipstreamkv/slipstream/internal/conformance/refstore"
	"github.com/slipstreamkv/slipstream/sdk"
)

func main() { sdk.Serve(refstore.New(refstore.Knobs{})) }
