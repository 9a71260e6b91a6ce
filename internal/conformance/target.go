package conformance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/storepb"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Capabilities a case may need: the optional interfaces of sdk.Store, by
// the names plugins report them under.
const (
	capCompact  = storepb.CapCompact  // sdk.Compacter
	capBulkLoad = storepb.CapBulkLoad // sdk.Loader
	capSnapshot = storepb.CapSnapshot // sdk.Snapshotter
)

// storeInfo is what the suite knows of a store under test: what it says of
// itself and the optional interfaces it implements.
type storeInfo struct {
	sdk.Info
	caps []string
}

// Has reports whether the store implements capability c's interface.
func (i storeInfo) Has(c string) bool { return slices.Contains(i.caps, c) }

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
	// pipe: instances take batches on an apply pipe, as the host sends
	// them while a fold catches up; probe finds it out.
	pipe bool
}

// Plugin is the store plugin binary at path, run the way the host runs it:
// every instance is a new process, started and spoken to as the host does.
func Plugin(path string) Target {
	return Target{
		name:    path,
		process: true,
		canKill: true,
		start: func(ctx context.Context, log io.Writer) (instance, error) {
			p, err := pluginhost.Launch(ctx, pluginhost.Config{
				Path:   path,
				Logger: slog.New(slog.NewTextHandler(log, nil)),
			})
			if err != nil {
				return nil, err
			}
			return newPluginInstance(p), nil
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
			return newLocalInstance(newStore()), nil
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
	// Compact, BeginLoad, EndLoad and Snapshot reach the store's optional
	// interfaces; the suite calls them only when info declares them.
	Compact(ctx context.Context) error
	BeginLoad(ctx context.Context) error
	EndLoad(ctx context.Context) error
	Snapshot(ctx context.Context) (sdk.Snapshot, error)
	// info is what the store declares about itself.
	info() storeInfo
	// kill ends the instance as a crash would: no Close, nothing survives
	// that the store has not committed. It may be called while another call
	// is running.
	kill() error
	// release frees what the instance holds (a plugin's process) once it is
	// closed or killed.
	release()
}

// piper is an instance with an apply pipe: a plugin process.
type piper interface {
	Pipe(ctx context.Context) (pluginhost.BatchPipe, error)
}

var (
	errNoKill       = errors.New("this target cannot kill a store instance")
	errNoCapability = errors.New("the store does not implement this optional interface")
)

// optional reaches the optional interfaces of an instance's store; a call
// to one the store does not implement fails.
type optional struct {
	compacter   sdk.Compacter
	loader      sdk.Loader
	snapshotter sdk.Snapshotter
}

func (o optional) Compact(ctx context.Context) error {
	if o.compacter == nil {
		return errNoCapability
	}
	return o.compacter.Compact(ctx)
}

func (o optional) BeginLoad(ctx context.Context) error {
	if o.loader == nil {
		return errNoCapability
	}
	return o.loader.BeginLoad(ctx)
}

func (o optional) EndLoad(ctx context.Context) error {
	if o.loader == nil {
		return errNoCapability
	}
	return o.loader.EndLoad(ctx)
}

func (o optional) Snapshot(ctx context.Context) (sdk.Snapshot, error) {
	if o.snapshotter == nil {
		return nil, errNoCapability
	}
	return o.snapshotter.Snapshot(ctx)
}

// describe is the storeInfo of a store that says info of itself and has
// these optional interfaces.
func (o optional) describe(info sdk.Info) storeInfo {
	si := storeInfo{Info: info}
	if o.compacter != nil {
		si.caps = append(si.caps, capCompact)
	}
	if o.loader != nil {
		si.caps = append(si.caps, capBulkLoad)
	}
	if o.snapshotter != nil {
		si.caps = append(si.caps, capSnapshot)
	}
	return si
}

type pluginInstance struct {
	*pluginhost.Plugin
	optional
}

func newPluginInstance(p *pluginhost.Plugin) pluginInstance {
	in := pluginInstance{Plugin: p}
	if c, ok := p.Compacter(); ok {
		in.compacter = c
	}
	if l, ok := p.Loader(); ok {
		in.loader = l
	}
	if sn, ok := p.Snapshotter(); ok {
		in.snapshotter = sn
	}
	return in
}

func (p pluginInstance) info() storeInfo { return p.describe(p.Info()) }

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

// localInstance is a store called directly; it has no pipe (the host sends
// a store in its own process one batch at a time).
type localInstance struct {
	sdk.Store
	optional
}

func newLocalInstance(s sdk.Store) localInstance {
	in := localInstance{Store: s}
	in.compacter, _ = s.(sdk.Compacter)
	in.loader, _ = s.(sdk.Loader)
	in.snapshotter, _ = s.(sdk.Snapshotter)
	return in
}

func (l localInstance) info() storeInfo {
	var info sdk.Info
	if d, ok := l.Store.(sdk.Describer); ok {
		info = d.Describe()
	}
	return l.describe(info)
}

func (localInstance) kill() error { return errNoKill }

// release closes the store if a failed case left it open.
func (l localInstance) release() { _ = l.Close(context.Background()) }
