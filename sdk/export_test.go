package sdk

import "github.com/slipstreamkv/slipstream/internal/storepb"

// NewServer is the serving side of the protocol for s, for the tests of
// package sdk_test that put the host's client in front of it.
func NewServer(s Store) storepb.StoreServer { return newServer(s) }

// Pack is the packed run the host sends for ms.
var Pack = pack
