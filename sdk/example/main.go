// Command slipstream-store-example is a complete slipstream store plugin in
// two short files, written to be copied: store.go implements sdk.Store on a
// single JSON file, and this file serves it.
//
// Build it as slipstream-store-NAME (the host finds plugins by that name),
// prove it with `slipstream conformance --plugin PATH`, and name it in a
// fold's config. README.md walks through it.
package main

import "github.com/slipstreamkv/slipstream/sdk"

// main hands the store to sdk.Serve, which runs the go-plugin gRPC server the
// host talks to. Serve returns when the host ends the plugin, after closing
// the store. Nothing may print to stdout: it carries the plugin handshake.
func main() { sdk.Serve(&Store{}) }
