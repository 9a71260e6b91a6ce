package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ErrPluginUnavailable is returned by calls on a plugin whose process has
// died or stopped answering. The host restarts such a plugin.
var ErrPluginUnavailable = errors.New("store plugin unavailable")

// LaunchConfig says which plugin binary to start and how.
type LaunchConfig struct {
	// Path is the plugin binary.
	Path string
	// Args are passed to the binary.
	Args []string
	// Logger receives the plugin's log records; nil discards them.
	Logger *slog.Logger
	// StartTimeout bounds the handshake; default 30s.
	StartTimeout time.Duration
}

// Plugin is a running store plugin process. It implements Store; every call
// crosses the process boundary over gRPC.
type Plugin struct {
	Store
	client *plugin.Client
	info   Info
	path   string
	logs   *slogWriter
}

// Launch starts the plugin binary, negotiates the protocol version, and
// returns a connected Plugin. Errors name the binary and the reason.
func Launch(ctx context.Context, cfg LaunchConfig) (*Plugin, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logs := &slogWriter{logger: logger}
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Output:     logs,
		JSONFormat: true,
		Level:      hclog.Debug,
	})
	cmd := exec.Command(cfg.Path, cfg.Args...)
	setProcAttr(cmd)
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: {pluginName: &grpcPlugin{}}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     cfg.StartTimeout,
		Logger:           hlog,
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes))},
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("store plugin %s: handshake failed: %w", cfg.Path, err)
	}
	if v := c.NegotiatedVersion(); v != ProtocolVersion {
		c.Kill()
		return nil, fmt.Errorf("store plugin %s: speaks protocol %d, host speaks %d", cfg.Path, v, ProtocolVersion)
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("store plugin %s: %w", cfg.Path, err)
	}
	cl := raw.(*client)
	info, err := cl.info(ctx)
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("store plugin %s: info: %w", cfg.Path, err)
	}
	return &Plugin{Store: cl, client: c, info: info, path: cfg.Path, logs: logs}, nil
}

// LastError is the last error the plugin logged, or the panic it printed:
// after the process died, most often why. "" when it logged none.
func (p *Plugin) LastError() string { return p.logs.LastError() }

// Info is what the plugin said about itself.
func (p *Plugin) Info() Info { return p.info }

// Path is the plugin binary.
func (p *Plugin) Path() string { return p.path }

// Compact asks the store to settle its files; a no-op for stores that do
// not declare CapCompact.
func (p *Plugin) Compact(ctx context.Context) error {
	return p.Store.(*client).Compact(ctx)
}

// BeginLoad tells the store a bulk load into it begins (see Loader); a
// no-op for stores that do not declare CapBulkLoad.
func (p *Plugin) BeginLoad(ctx context.Context) error {
	if !p.info.Has(CapBulkLoad) {
		return nil // a plugin built before the capability has no such call
	}
	return p.Store.(*client).BeginLoad(ctx)
}

// EndLoad tells the store the bulk load is over (see Loader); a no-op for
// stores that do not declare CapBulkLoad.
func (p *Plugin) EndLoad(ctx context.Context) error {
	if !p.info.Has(CapBulkLoad) {
		return nil
	}
	return p.Store.(*client).EndLoad(ctx)
}

// Exited reports whether the plugin process has ended.
func (p *Plugin) Exited() bool { return p.client.Exited() }

// Pid is the plugin's process id, or 0 once it has exited.
func (p *Plugin) Pid() int {
	if rc := p.client.ReattachConfig(); rc != nil && rc.Pid > 0 && !p.client.Exited() {
		return rc.Pid
	}
	return 0
}

// Kill ends the plugin process: gracefully if it answers (the plugin closes
// its store), forcibly after a short grace period. Close the store first to
// be sure its files are flushed.
func (p *Plugin) Kill() { p.client.Kill() }

// Shutdown closes the store and ends the process.
func (p *Plugin) Shutdown(ctx context.Context) error {
	err := p.Store.Close(ctx)
	p.client.Kill()
	if err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("store plugin %s: close: %w", p.path, err)
	}
	return nil
}
