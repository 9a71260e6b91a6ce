package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/slipstreamkv/slipstream/internal/storepb"
	"google.golang.org/grpc"
)

// LoggerSetter is implemented by stores that want the plugin's logger. Serve
// calls SetLogger before serving. Records reach the host's log with their
// level and attributes.
type LoggerSetter interface {
	SetLogger(*slog.Logger)
}

// parentPoll is how often a plugin checks that its host is still alive.
const parentPoll = 250 * time.Millisecond

// Serve runs s as a store plugin and returns when the host ends the plugin.
// It must be called from the plugin's main function; a binary run by hand
// exits with a message saying it is a plugin.
//
// Serve logs to stderr only (stdout carries the go-plugin handshake), closes
// the store on SIGTERM, and exits when its host process dies, so a killed
// host leaves no plugin behind. SIGINT is left to the host, which commits its
// open batch before it ends the plugin.
func Serve(s Store) {
	logger := pluginLogger(os.Stderr, slog.LevelDebug)
	startProfile(logger)
	defer stopProfile()
	if ls, ok := s.(LoggerSetter); ok {
		ls.SetLogger(logger)
	}
	p := &grpcPlugin{store: s}

	go exitWithHost(p, logger)
	go closeOnSignal(p, logger)

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: storepb.Handshake,
		// One set per protocol version this SDK serves; go-plugin picks the
		// newest the host speaks too.
		VersionedPlugins: map[int]plugin.PluginSet{storepb.ProtocolVersion: {storepb.PluginName: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(storepb.MaxMessageBytes), grpc.MaxSendMsgSize(storepb.MaxMessageBytes))
			return grpc.NewServer(opts...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info}),
	})
	shutdown(p, logger, "host ended the plugin")
}

// profile is the open CPU profile file, if any; profileMu guards it.
var (
	profileMu sync.Mutex
	profile   *os.File
)

// startProfile starts the CPU profile the host's environment asks for
// (storepb.ProfileEnv, set by the benchmarks).
func startProfile(logger *slog.Logger) {
	path := os.Getenv(storepb.ProfileEnv)
	if path == "" {
		return
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		logger.Warn("cpu profile not written", "env", storepb.ProfileEnv, "err", err)
		return
	}
	profileMu.Lock()
	profile = f
	profileMu.Unlock()
}

// stopProfile ends a running CPU profile; the process may exit after it.
func stopProfile() {
	profileMu.Lock()
	defer profileMu.Unlock()
	if profile != nil {
		pprof.StopCPUProfile()
		profile.Close()
		profile = nil
	}
}

func shutdown(p *grpcPlugin, logger *slog.Logger, why string) {
	defer stopProfile()
	if p.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.srv.closeStore(ctx); err != nil {
		logger.Error("closing store", "reason", why, "err", err)
	}
}

// exitWithHost ends the process when its parent changes: on Linux an orphan
// is re-parented, so a new parent pid means the host died.
func exitWithHost(p *grpcPlugin, logger *slog.Logger) {
	parent := os.Getppid()
	for range time.Tick(parentPoll) {
		if os.Getppid() != parent {
			logger.Warn("host process is gone; closing store and exiting", "host_pid", parent)
			shutdown(p, logger, "host died")
			os.Exit(0)
		}
	}
}

func closeOnSignal(p *grpcPlugin, logger *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	sig := <-ch
	logger.Info("signal received; closing store and exiting", "signal", sig.String())
	shutdown(p, logger, sig.String())
	os.Exit(0)
}
