// Command slipstream-store-sqlite is the SQLite store plugin: each fold is a
// SQLite database in WAL mode whose tables other programs may read directly
// (see the layout in package store).
package main

import (
	"github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

func main() { sdk.Serve(store.New()) }
