// Command slipstream-store-pebble is the pebble store plugin: an LSM fold for
// large key counts. The host starts it; run by hand it says it is a plugin.
package main

import (
	"github.com/slipstreamkv/slipstream/plugins/pebble/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

func main() { sdk.Serve(store.New()) }
