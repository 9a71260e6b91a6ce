// Package chain runs a fold's WASM transform chain as a fold.Transform: it
// compiles the configured modules, applies each module's on_error policy,
// and gives the fold a digest that covers everything that decides what the
// fold holds. It never touches the store or the cursor.
package chain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/transforms"
)

// Config says which chain to build.
type Config struct {
	// Fold names the fold, for metrics and logs.
	Fold string
	// Modules are the fold's [[fold.transform]] entries, in order.
	Modules []config.Transform
	// CacheDir keeps compiled modules across restarts; "" keeps them in
	// memory only.
	CacheDir string
	Logger   *slog.Logger
	// Registerer receives slipstream_transform_skipped_total; nil skips it.
	Registerer prometheus.Registerer
}

// Transform is a fold's compiled chain. It implements fold.Transform and,
// like a transforms.Chain, is used by one goroutine.
type Transform struct {
	fold    string
	rt      *transforms.Runtime
	mods    []transforms.Module
	owner   bool // closes rt; a fork shares its parent's
	chain   *transforms.Chain
	onError map[string]string // module name -> stall | skip
	digest  string
	log     *slog.Logger
}

var skippedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "slipstream_transform_skipped_total",
	Help: "Updates a transform failed on and that were skipped under on_error = \"skip\".",
}, []string{"fold", "module"})

// New compiles the modules into a chain.
func New(ctx context.Context, cfg Config) (*Transform, error) {
	rt, err := transforms.NewRuntime(ctx, transforms.Options{CacheDir: cfg.CacheDir})
	if err != nil {
		return nil, err
	}
	mods := make([]transforms.Module, len(cfg.Modules))
	onError := map[string]string{}
	h := sha256.New()
	for i, t := range cfg.Modules {
		mods[i] = transforms.Module{Name: t.Name, Path: t.Module, Config: t.Config}
		onError[t.Name] = t.OnError
		fmt.Fprintf(h, "%s=%s\n", t.Name, t.OnError)
	}
	chain, err := rt.NewChain(ctx, mods)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	h.Write([]byte(chain.Digest()))
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(skippedVec); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			_ = chain.Close(ctx)
			_ = rt.Close(ctx)
			return nil, err
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Transform{fold: cfg.Fold, rt: rt, mods: mods, owner: true, chain: chain, onError: onError,
		digest: hex.EncodeToString(h.Sum(nil)), log: logger}, nil
}

// Fork returns a Transform of its own over the same modules, for a second
// goroutine (a chain is used by one goroutine at a time). The modules are
// compiled once, by the shared runtime; the fork has its own instances and
// must be closed before its parent.
func (t *Transform) Fork(ctx context.Context) (fold.Transform, func(), error) {
	chain, err := t.rt.NewChain(ctx, t.mods)
	if err != nil {
		return nil, nil, err
	}
	f := *t
	f.chain, f.owner = chain, false
	return &f, func() { _ = f.Close(context.WithoutCancel(ctx)) }, nil
}

// Close releases the chain and, unless it is a fork, its runtime.
func (t *Transform) Close(ctx context.Context) error {
	if !t.owner {
		return t.chain.Close(ctx)
	}
	return errors.Join(t.chain.Close(ctx), t.rt.Close(ctx))
}

// Digest covers the modules, their config and their on_error policies: all
// of them decide what the fold holds.
func (t *Transform) Digest() string { return t.digest }

// Apply implements fold.Transform. The chain answers for each mutation;
// the kept ones, rewritten, are compacted into in's array.
func (t *Transform) Apply(ctx context.Context, in []sdk.Mutation) ([]sdk.Mutation, error) {
	outs, err := t.chain.Process(ctx, in)
	if err != nil {
		return nil, err
	}
	kept := in[:0]
	for i, o := range outs {
		if o.Err != nil {
			var ge *transforms.GuestError
			if errors.As(o.Err, &ge) && t.onError[ge.Module] == "skip" {
				skippedVec.WithLabelValues(t.fold, ge.Module).Inc()
				t.log.Warn("transform failed; update skipped", "err", o.Err, "revision", in[i].Revision)
				continue
			}
			return nil, o.Err
		}
		if !o.Keep {
			continue
		}
		kept = append(kept, o.Record)
	}
	return kept, nil
}
