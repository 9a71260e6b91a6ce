package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/watch"
	"github.com/slipstreamkv/slipstream/transforms"
)

// chainTransform runs a fold's WASM chain and applies its on_error policy.
type chainTransform struct {
	fold    string
	chain   *transforms.Chain
	onError map[string]string // module name -> stall | skip
	digest  string
	skipped *prometheus.CounterVec
	log     *slog.Logger
}

var skippedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "slipstream_transform_skipped_total",
	Help: "Updates a transform failed on and that were skipped under on_error = \"skip\".",
}, []string{"fold", "module"})

// newTransform compiles the fold's modules (with the on-disk compilation
// cache under the data dir) into a chain.
func newTransform(ctx context.Context, cfg *config.Config, fc *config.Fold, logger *slog.Logger,
	reg *prometheus.Registry) (fold.Transform, func(), error) {
	rt, err := transforms.NewRuntime(ctx, transforms.Options{CacheDir: filepath.Join(cfg.DataDir, "wasm-cache")})
	if err != nil {
		return nil, nil, err
	}
	mods := make([]transforms.Module, len(fc.Transforms))
	onError := map[string]string{}
	h := sha256.New()
	for i, t := range fc.Transforms {
		mods[i] = transforms.Module{Name: t.Name, Path: t.Module, Config: t.Config}
		onError[t.Name] = t.OnError
		fmt.Fprintf(h, "%s=%s\n", t.Name, t.OnError)
	}
	chain, err := rt.NewChain(ctx, mods)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, nil, err
	}
	h.Write([]byte(chain.Digest()))
	if err := reg.Register(skippedVec); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		return nil, nil, err
	}
	t := &chainTransform{
		fold: fc.Name, chain: chain, onError: onError, digest: hex.EncodeToString(h.Sum(nil)),
		skipped: skippedVec, log: logger,
	}
	closeFn := func() {
		ctx := context.Background()
		_ = chain.Close(ctx)
		_ = rt.Close(ctx)
	}
	return t, closeFn, nil
}

// Digest covers the modules, their config and their on_error policies: all
// of them decide what the fold holds.
func (t *chainTransform) Digest() string { return t.digest }

var toOp = map[watch.Op]transforms.Op{watch.OpPut: transforms.OpPut, watch.OpDelete: transforms.OpDelete, watch.OpPurge: transforms.OpPurge}

// Apply implements fold.Transform.
func (t *chainTransform) Apply(ctx context.Context, in []fold.Change) ([]fold.Change, error) {
	recs := make([]transforms.Record, len(in))
	for i, c := range in {
		recs[i] = transforms.Record{Op: toOp[c.Op], Key: []byte(c.Key), Value: c.Value, Revision: c.Revision}
	}
	outs, err := t.chain.Process(ctx, recs)
	if err != nil {
		return nil, err
	}
	kept := in[:0]
	for i, o := range outs {
		if o.Err != nil {
			var ge *transforms.GuestError
			if errors.As(o.Err, &ge) && t.onError[ge.Module] == "skip" {
				t.skipped.WithLabelValues(t.fold, ge.Module).Inc()
				t.log.Warn("transform failed; update skipped", "err", o.Err, "revision", in[i].Revision)
				continue
			}
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
