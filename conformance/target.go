package conformance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"

	"github.com/slipstreamkv/slipstream/sdk"
)

// Target is a store under test: how the suite starts instances of it. Make
// one with Plugin or InProcess.
type Target struct {
	name   string
	config []byte
	start  func(ctx context.Context, log io.Writer) (instance, error)
	// process: instances are processes that kill ends with SIGKILL, at any
	// moment, so the suite may kill one in the middle of an Apply.
	process bool
	// canKill: instances can simulate a crash after a call has returned.
	canKill bool
	// pipe: instances take batches on an apply pipe (sdk.Pipe), as the host
	// sends them while a fold catches up; probe finds it out.
	pipe bool
}

// Plugin is the store plugin binary at path, run the way the host runs it:
// every instance is a new process started with sdk.Launch.
func Plugin(path string) Target {
	return Target{
		name:    path,
		process: true,
		canKill: true,
		start: func(ctx context.Context, log io.Writer) (instance, error) {
			p, err := sdk.Launch(ctx, sdk.LaunchConfig{
				Path:   path,
				Logger: slog.New(slog.NewTextHandler(log, nil)),
			})
			if err != nil {
				return nil, err
			}
			return pluginInstance{p}, nil
		},
	}
}

// InProcess is a store called directly, without a plugin process: newStore
// returns a new, closed store for every instance the suite starts, and the
// suite may Close and Open an instance again, as sdk.Serve allows. Such a
// store must itself return sdk.ErrClosed before Open and after Close, which
// sdk.Serve otherwise does for it. The cases that kill a store are skipped.
func InProcess(name string, newStore func() sdk.Store) Target {
	return Target{
		name: name,
		start: func(context.Context, io.Writer) (instance, error) {
			return localInstance{Store: newStore()}, nil
		},
	}
}

// WithConfig returns the target with the store_config JSON every Open
// passes; the default is "{}".
func (t Target) WithConfig(config []byte) Target {
	t.config = config
	return t
}

// instance is one running copy of the store under test.
type instance interface {
	sdk.Store
	sdk.Compacter
	sdk.Loader
	// Pipe opens an apply pipe, or returns sdk.ErrNoPipe.
	Pipe(ctx context.Context) (sdk.BatchPipe, error)
	// info is what the store declares about itself.
	info() sdk.Info
	// kill ends the instance as a crash would: no Close, nothing survives
	// that the store has not committed. It may be called while another call
	// is running.
	kill() error
	// release frees what the instance holds (a plugin's process) once it is
	// closed or killed.
	release()
}

var errNoKill = errors.New("this target cannot kill a store instance")

type pluginInstance struct {
	*sdk.Plugin
}

func (p pluginInstance) info() sdk.Info { return p.Info() }

func (p pluginInstance) kill() error {
	pid := p.Pid()
	if pid == 0 {
		return errors.New("plugin process has already exited")
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return proc.Kill() // SIGKILL on Unix
}

func (p pluginInstance) release() { p.Kill() }

type localInstance struct {
	sdk.Store
}

// Pipe: a store called directly has no pipe; the host sends it nothing.
func (localInstance) Pipe(context.Context) (sdk.BatchPipe, error) { return nil, sdk.ErrNoPipe }

func (l localInstance) info() sdk.Info {
	var info sdk.Info
	if d, ok := l.Store.(sdk.Describer); ok {
		info = d.Describe()
	}
	if _, ok := l.Store.(sdk.Compacter); ok && !info.Has(sdk.CapCompact) {
		info.Capabilities = append(info.Capabilities, sdk.CapCompact)
	}
	if _, ok := l.Store.(sdk.Loader); ok && !info.Has(sdk.CapBulkLoad) {
		info.Capabilities = append(info.Capabilities, sdk.CapBulkLoad)
	}
	return info
}

// Compact forwards to the store if it compacts; the suite calls it only
// when the store declares sdk.CapCompact.
func (l localInstance) Compact(ctx context.Context) error {
	if c, ok := l.Store.(sdk.Compacter); ok {
		return c.Compact(ctx)
	}
	return nil
}

// BeginLoad and EndLoad forward to the store if it loads; the suite calls
// them only when the store declares sdk.CapBulkLoad. (A plugin instance has
// them from sdk.Plugin, which does the same across the process boundary.)
func (l localInstance) BeginLoad(ctx context.Context) error {
	if ld, ok := l.Store.(sdk.Loader); ok {
		return ld.BeginLoad(ctx)
	}
	return nil
}

func (l localInstance) EndLoad(ctx context.Context) error {
	if ld, ok := l.Store.(sdk.Loader); ok {
		return ld.EndLoad(ctx)
	}
	return nil
}

func (localInstance) kill() error { return errNoKill }

// release closes the store if a failed case left it open.
func (l localInstance) release() { _ = l.Close(context.Background()) }
