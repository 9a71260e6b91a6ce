// Package pluginhost is the host's side of the store plugin protocol: it
// starts a plugin binary through go-plugin, negotiates the protocol
// version, and gives the host a *Plugin that implements sdk.Store over
// gRPC, with typed accessors for the optional interfaces the plugin's store
// implements. Plugin authors never import it; they use package sdk.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/slipstreamkv/slipstream/internal/storepb"
	"github.com/slipstreamkv/slipstream/sdk"
	"google.golang.org/grpc"
)

// Config says which plugin binary to start and how.
type Config struct {
	// Path is the plugin binary.
	Path string
	// Args are passed to the binary.
	Args []string
	// Logger receives the plugin's log records; nil discards them.
	Logger *slog.Logger
	// StartTimeout bounds the handshake; default 30s.
	StartTimeout time.Duration
}

// Plugin is a running store plugin. It implements sdk.Store; every call
// crosses the process boundary over gRPC.
type Plugin struct {
	rpc  storepb.StoreClient
	proc *plugin.Client // nil for a plugin reached with Connect
	info sdk.Info
	caps []string
	path string
	logs *logWriter
}

// grpcPlugin is the host's half of the go-plugin binding.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (grpcPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the host does not serve a store")
}

func (grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return storepb.NewStoreClient(conn), nil
}

// Launch starts the plugin binary, negotiates the protocol version, and
// returns a connected Plugin. Errors name the binary and the reason.
func Launch(ctx context.Context, cfg Config) (*Plugin, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logs := &logWriter{logger: logger}
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Output:     logs,
		JSONFormat: true,
		Level:      hclog.Debug,
	})
	cmd := exec.Command(cfg.Path, cfg.Args...)
	// go-plugin appends the host's environment to this.
	cmd.Env = pluginEnv(os.Environ())
	setProcAttr(cmd)
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: storepb.Handshake,
		// One set per protocol version the host speaks; go-plugin picks the
		// newest the plugin serves too.
		VersionedPlugins: map[int]plugin.PluginSet{storepb.ProtocolVersion: {storepb.PluginName: grpcPlugin{}}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     cfg.StartTimeout,
		Logger:           hlog,
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(storepb.MaxMessageBytes), grpc.MaxCallSendMsgSize(storepb.MaxMessageBytes))},
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("store plugin %s: handshake failed: %w", cfg.Path, err)
	}
	if v := c.NegotiatedVersion(); v != storepb.ProtocolVersion {
		c.Kill()
		return nil, fmt.Errorf("store plugin %s: speaks protocol %d, host speaks %d", cfg.Path, v, storepb.ProtocolVersion)
	}
	raw, err := rpc.Dispense(storepb.PluginName)
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("store plugin %s: %w", cfg.Path, err)
	}
	p, err := connect(ctx, raw.(storepb.StoreClient), cfg.Path, logs)
	if err != nil {
		c.Kill()
		return nil, err
	}
	p.proc = c
	return p, nil
}

// Connect is a Plugin over a connection to a store served some other way
// than Launch (a test serves one in process). It has no process: Exited is
// false, Pid 0, Kill does nothing.
func Connect(ctx context.Context, conn grpc.ClientConnInterface, name string) (*Plugin, error) {
	return connect(ctx, storepb.NewStoreClient(conn), name, &logWriter{logger: slog.New(slog.DiscardHandler)})
}

func connect(ctx context.Context, rpc storepb.StoreClient, path string, logs *logWriter) (*Plugin, error) {
	resp, err := rpc.Info(ctx, &storepb.InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("store plugin %s: info: %w", path, fromStatus(err))
	}
	return &Plugin{
		rpc:  rpc,
		info: sdk.Info{Name: resp.GetName(), Version: resp.GetVersion()},
		caps: resp.GetCapabilities(),
		path: path,
		logs: logs,
	}, nil
}

func (p *Plugin) has(capability string) bool { return slices.Contains(p.caps, capability) }

// LastError is the last error the plugin logged, or the panic it printed:
// after the process died, most often why. "" when it logged none.
func (p *Plugin) LastError() string { return p.logs.LastError() }

// Info is what the plugin's store said about itself (sdk.Describer).
func (p *Plugin) Info() sdk.Info { return p.info }

// Path is the plugin binary.
func (p *Plugin) Path() string { return p.path }

// Exited reports whether the plugin process has ended.
func (p *Plugin) Exited() bool { return p.proc != nil && p.proc.Exited() }

// Pid is the plugin's process id, or 0 once it has exited.
func (p *Plugin) Pid() int {
	if p.proc == nil {
		return 0
	}
	if rc := p.proc.ReattachConfig(); rc != nil && rc.Pid > 0 && !p.proc.Exited() {
		return rc.Pid
	}
	return 0
}

// Kill ends the plugin process: gracefully if it answers (the plugin closes
// its store), forcibly after a short grace period. Close the store first to
// be sure its files are flushed.
func (p *Plugin) Kill() {
	if p.proc != nil {
		p.proc.Kill()
	}
}

// Shutdown closes the store and ends the process.
func (p *Plugin) Shutdown(ctx context.Context) error {
	err := p.Close(ctx)
	p.Kill()
	if err != nil && !errors.Is(err, sdk.ErrClosed) {
		return fmt.Errorf("store plugin %s: close: %w", p.path, err)
	}
	return nil
}
