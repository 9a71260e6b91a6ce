package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"github.com/slipstreamkv/slipstream/sdk/internal/storepb"
	"google.golang.org/grpc"
)

// Handshake guards against running a plugin binary by hand and against a
// host and plugin built for different contracts.
var Handshake = plugin.HandshakeConfig{
	MagicCookieKey:   "SLIPSTREAM_STORE_PLUGIN",
	MagicCookieValue: "d8f4c1e2-fold-store",
}

// pluginName is the key the store is dispensed under.
const pluginName = "store"

// grpcPlugin binds the Store service to go-plugin, on both sides.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	store Store // nil on the host side
	srv   *server
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	p.srv = newServer(p.store)
	storepb.RegisterStoreServer(s, p.srv)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &client{rpc: storepb.NewStoreClient(conn)}, nil
}
