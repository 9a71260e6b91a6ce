// Command splitcommit is a store plugin that commits a batch's data and its
// cursor in two steps, a pause apart: the conformance suite's kill-mid-apply
// case must catch it. The suite's tests build it.
package main

import (
	"github.com/slipstreamkv/slipstream/internal/conformance/refstore"
	"github.com/slipstreamkv/slipstream/sdk"
)

func main() { sdk.Serve(refstore.New(refstore.Knobs{SplitCommit: true})) }
