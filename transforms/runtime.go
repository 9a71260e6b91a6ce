package transforms

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Defaults for Options fields left zero.
const (
	// DefaultMemoryLimitPages caps guest memory at 16 MiB.
	DefaultMemoryLimitPages = 256
	// DefaultCallTimeout bounds every call into a guest.
	DefaultCallTimeout = time.Second
)

// maxMemoryPages is the 4 GiB address space of a 32-bit wasm memory.
const maxMemoryPages = 65536

// Options configures a Runtime. The zero value is usable.
type Options struct {
	// CacheDir holds compiled modules across processes (wazero's
	// compilation cache); "" keeps them in memory only.
	CacheDir string
	// MemoryLimitPages caps each instance's linear memory, in 64 KiB pages;
	// 0 means DefaultMemoryLimitPages.
	MemoryLimitPages uint32
	// CallTimeout bounds every call into a guest, interrupting guest code
	// that loops; 0 means DefaultCallTimeout. It also bounds instantiating
	// a module and running its init, which takes milliseconds for a Go
	// guest: keep it well above that.
	CallTimeout time.Duration
}

// Runtime compiles transform modules and makes chains of them. It is safe
// for concurrent use; each Chain it makes is not.
type Runtime struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache // nil without CacheDir
	opts  Options                 // with defaults applied
	wasi  map[string]api.FunctionDefinition

	mu       sync.Mutex
	closed   bool
	compiled map[[sha256.Size]byte]*compilation
}

// compilation is a module compiled and checked against ABI v1, shared by
// every chain of the runtime. done is closed when mod and err are set.
type compilation struct {
	done     chan struct{}
	mod      wazero.CompiledModule
	hasBatch bool
	err      error
}

// NewRuntime returns a runtime with the given options.
func NewRuntime(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.MemoryLimitPages == 0 {
		opts.MemoryLimitPages = DefaultMemoryLimitPages
	}
	if opts.MemoryLimitPages > maxMemoryPages {
		return nil, fmt.Errorf("transforms: MemoryLimitPages %d is above the wasm maximum of %d", opts.MemoryLimitPages, maxMemoryPages)
	}
	if opts.CallTimeout == 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.CallTimeout < 0 {
		return nil, fmt.Errorf("transforms: negative CallTimeout %v", opts.CallTimeout)
	}
	cfg := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(opts.MemoryLimitPages).
		WithCloseOnContextDone(true)
	r := &Runtime{opts: opts, compiled: make(map[[sha256.Size]byte]*compilation)}
	if opts.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("transforms: compilation cache: %w", err)
		}
		r.cache = cache
		cfg = cfg.WithCompilationCache(cache)
	}
	r.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r.rt); err != nil {
		return nil, errors.Join(fmt.Errorf("transforms: WASI stubs: %w", err), r.Close(ctx))
	}
	r.wasi = r.rt.Module(wasiModule).ExportedFunctionDefinitions()
	return r, nil
}

// Close releases every compiled module and instance of the runtime,
// including those of chains not yet closed.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	err := r.rt.Close(ctx)
	if r.cache != nil {
		err = errors.Join(err, r.cache.Close(ctx))
	}
	return err
}

// compile returns the compilation of code, compiling and checking it on the
// first request. Concurrent requests for the same code wait for one
// compilation; a failed one is not kept.
func (r *Runtime) compile(ctx context.Context, code []byte) (*compilation, error) {
	key := sha256.Sum256(code)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.New("runtime is closed")
	}
	c, ok := r.compiled[key]
	if !ok {
		c = &compilation{done: make(chan struct{})}
		r.compiled[key] = c
	}
	r.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	c.mod, c.err = r.rt.CompileModule(ctx, code)
	if c.err == nil {
		c.hasBatch, c.err = r.checkABI(c.mod)
		if c.err != nil {
			c.err = errors.Join(c.err, c.mod.Close(ctx))
		}
	}
	if c.err != nil {
		r.mu.Lock()
		delete(r.compiled, key)
		r.mu.Unlock()
	}
	close(c.done)
	return c, c.err
}

// checkABI checks that m implements ABI v1 and imports only what the
// runtime provides, and reports whether it exports the batched entry point.
func (r *Runtime) checkABI(m wazero.CompiledModule) (hasBatch bool, err error) {
	exports := m.ExportedFunctions()
	if _, ok := exports[exportMarker]; !ok {
		return false, fmt.Errorf("not a slipstream ABI v1 module: export %q is missing", exportMarker)
	}
	for _, f := range abiFunctions {
		def, ok := exports[f.name]
		switch {
		case !ok && f.required:
			return false, fmt.Errorf("ABI v1 export %q is missing", f.name)
		case !ok:
			continue
		case !f.sig.matches(def):
			got := signature{def.ParamTypes(), def.ResultTypes()}
			return false, fmt.Errorf("ABI v1 export %q has type %v, want %v", f.name, got, f.sig)
		}
		hasBatch = hasBatch || f.name == exportBatch
	}
	if _, ok := m.ExportedMemories()[exportMemory]; !ok {
		return false, fmt.Errorf("ABI v1 export %q (memory) is missing", exportMemory)
	}
	if _, isCommand := exports["_start"]; isCommand {
		if _, isReactor := exports["_initialize"]; !isReactor {
			return false, errors.New("module is a WASI command (exports _start); build it as a reactor, for Go with -buildmode=c-shared")
		}
	}
	for _, def := range m.ImportedFunctions() {
		mod, name, _ := def.Import()
		if mod != wasiModule {
			return false, fmt.Errorf("module imports %s.%s; only %s functions are provided", mod, name, wasiModule)
		}
		want, ok := r.wasi[name]
		if !ok {
			return false, fmt.Errorf("module imports %s.%s, which the host does not provide", mod, name)
		}
		if got := (signature{def.ParamTypes(), def.ResultTypes()}); !got.matches(want) {
			return false, fmt.Errorf("module imports %s.%s with type %v, want %v", mod, name, got, signature{want.ParamTypes(), want.ResultTypes()})
		}
	}
	for _, def := range m.ImportedMemories() {
		mod, name, _ := def.Import()
		return false, fmt.Errorf("module imports memory %s.%s; modules must define their own memory", mod, name)
	}
	return hasBatch, nil
}
