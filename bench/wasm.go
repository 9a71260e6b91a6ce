package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/watch"
	"github.com/slipstreamkv/slipstream/transforms"
)

// wasmTransform is a fold.Transform over a WASM chain: the minimal form of
// the service's adapter (host/service/transform.go) without its on_error
// policy, since a keep-all module never fails.
type wasmTransform struct {
	rt    *transforms.Runtime
	chain *transforms.Chain
}

// newWASM compiles the module at path into a one-module chain, with the
// compilation cache in cacheDir as the service does.
func newWASM(ctx context.Context, path, cacheDir string) (*wasmTransform, error) {
	rt, err := transforms.NewRuntime(ctx, transforms.Options{CacheDir: cacheDir})
	if err != nil {
		return nil, err
	}
	chain, err := rt.NewChain(ctx, []transforms.Module{{Name: "keepall", Path: path}})
	if err != nil {
		return nil, errors.Join(err, rt.Close(ctx))
	}
	return &wasmTransform{rt: rt, chain: chain}, nil
}

// Digest is the chain's digest.
func (t *wasmTransform) Digest() string { return t.chain.Digest() }

var toTransformOp = map[watch.Op]transforms.Op{
	watch.OpPut: transforms.OpPut, watch.OpDelete: transforms.OpDelete, watch.OpPurge: transforms.OpPurge,
}

// Apply runs the batch through the chain and keeps what it keeps.
func (t *wasmTransform) Apply(ctx context.Context, in []fold.Change) ([]fold.Change, error) {
	recs := make([]transforms.Record, len(in))
	for i, c := range in {
		recs[i] = transforms.Record{Op: toTransformOp[c.Op], Key: []byte(c.Key), Value: c.Value, Revision: c.Revision}
	}
	outs, err := t.chain.Process(ctx, recs)
	if err != nil {
		return nil, err
	}
	kept := in[:0]
	for i, o := range outs {
		if o.Err != nil {
			return nil, o.Err
		}
		if !o.Keep {
			continue
		}
		c := in[i]
		c.Key = string(o.Record.Key)
		if c.Op == watch.OpPut {
			c.Value = o.Record.Value
		}
		kept = append(kept, c)
	}
	return kept, nil
}

func (t *wasmTransform) close(ctx context.Context) error {
	return errors.Join(t.chain.Close(ctx), t.rt.Close(ctx))
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
