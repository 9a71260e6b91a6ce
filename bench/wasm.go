package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/slipstreamkv/slipstream/host/chain"
	"github.com/slipstreamkv/slipstream/host/config"
)

// newWASM compiles the module at path into a one-module chain through the
// service's own adapter (host/chain), with the compilation cache in
// cacheDir as the service has it.
func newWASM(ctx context.Context, path, cacheDir string) (*chain.Transform, error) {
	return chain.New(ctx, chain.Config{
		Fold:     "bench",
		Modules:  []config.Transform{{Module: path, Name: "keepall", OnError: "stall"}},
		CacheDir: cacheDir,
	})
}

// keepAllModule returns the keep-all module: -transform when it exists, or
// transforms/examples/wat/keepall.wat assembled with wat2wasm into the work
// directory.
func (b *bench) keepAllModule(ctx context.Context) (string, error) {
	if _, err := os.Stat(b.o.transform); err == nil {
		return b.o.transform, nil
	}
	src := filepath.Join("transforms", "examples", "wat", "keepall.wat")
	out := filepath.Join(b.dir, "keepall.wasm")
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		return "", fmt.Errorf("keep-all module %s is missing (make transforms builds it) and wat2wasm is not installed", b.o.transform)
	}
	if msg, err := exec.CommandContext(ctx, "wat2wasm", "-o", out, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("keep-all module %s is missing; assembling %s: %v\n%s", b.o.transform, src, err, msg)
	}
	b.logf("%s not found; assembled %s", b.o.transform, src)
	return out, nil
}
