package service

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/slipstreamkv/slipstream/host/chain"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
)

// storeCheckTimeout bounds opening and closing a plugin's store on a
// throwaway directory; the handshake has its own bound
// (pluginhost.Config.StartTimeout).
const storeCheckTimeout = 30 * time.Second

// Validate checks what Start and Run would refuse in a config that
// config.Load accepted, short of NATS and of the folds' data:
//
//   - the HTTP API's tls_cert and tls_key load as a key pair (ValidateOffline);
//   - each fold's store plugin is found, completes its handshake, and opens
//     a store with the fold's store_config in a throwaway directory (a store
//     reports unknown or bad store_config keys at Open: sdk.Store);
//   - each fold's transform chain is built as Start builds it (chain.New:
//     every module compiled and instantiated, its init given its config),
//     with a throwaway compilation cache.
//
// Nothing is written under data_dir and no fold directory is read, so a
// config can be validated while a service runs it. Every problem found is
// reported, each naming its fold (and its transform), joined in one error;
// nil means none. Validate stops early, with ctx's error among the
// problems, when ctx ends. Plugin and transform logs go to logger.
func Validate(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if err := ValidateOffline(cfg); err != nil {
		errs = append(errs, err)
	}
	scratch, err := os.MkdirTemp("", "slipstream-validate-")
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("validate: scratch directory: %w", err))...)
	}
	defer os.RemoveAll(scratch)
	// One compilation cache for every fold: a module used by several folds
	// is compiled once.
	cache := filepath.Join(scratch, "wasm-cache")
	for i := range cfg.Folds {
		fc := &cfg.Folds[i]
		if ctx.Err() != nil {
			return errors.Join(append(errs, fmt.Errorf("validate: %w", ctx.Err()))...)
		}
		log := logger.With("fold", fc.Name)
		if err := validateStore(ctx, cfg.PluginDir, fc, filepath.Join(scratch, "folds", fmt.Sprint(i)), log); err != nil {
			errs = append(errs, fmt.Errorf("fold %s: %w", fc.Name, err))
		}
		if err := validateChain(ctx, fc, cache, log); err != nil {
			errs = append(errs, fmt.Errorf("fold %s: %w", fc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ValidateOffline is the part of Validate that starts nothing: the HTTP
// API's tls_cert and tls_key must load as a key pair, as Start loads them.
// (config.Load already checked that the files exist.)
func ValidateOffline(cfg *config.Config) error {
	h := cfg.HTTP
	if h.Listen == config.HTTPOff || h.TLSCert == "" {
		return nil
	}
	if _, err := tls.LoadX509KeyPair(h.TLSCert, h.TLSKey); err != nil {
		return fmt.Errorf("http api: tls_cert and tls_key: %w", err)
	}
	return nil
}

// validateStore launches the fold's store plugin and opens a store in dir
// (which it removes) with the fold's store_config, then closes it and ends
// the plugin.
func validateStore(ctx context.Context, pluginDir string, fc *config.Fold, dir string, logger *slog.Logger) error {
	bin, err := ResolvePlugin(pluginDir, fc.Store)
	if err != nil {
		return err
	}
	storeCfg, err := storeConfigJSON(fc)
	if err != nil {
		return err
	}
	p, err := pluginhost.Launch(ctx, pluginhost.Config{Path: bin, Logger: logger})
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	octx, cancel := context.WithTimeout(ctx, storeCheckTimeout)
	defer cancel()
	if _, err := p.Open(octx, dir, storeCfg); err != nil {
		p.Kill()
		return fmt.Errorf("store plugin %q (%s): open with the fold's store_config: %w", fc.Store, bin, err)
	}
	if err := p.Shutdown(octx); err != nil {
		return err
	}
	return nil
}

// validateChain builds the fold's transform chain as Start does and closes
// it again.
func validateChain(ctx context.Context, fc *config.Fold, cacheDir string, logger *slog.Logger) error {
	if len(fc.Transforms) == 0 {
		return nil
	}
	t, err := chain.New(ctx, chain.Config{Fold: fc.Name, Modules: fc.Transforms, CacheDir: cacheDir, Logger: logger})
	if err != nil {
		return err
	}
	return t.Close(context.WithoutCancel(ctx))
}

// storeConfigJSON is a fold's store_config table as the JSON its store
// plugin's Open receives: "{}" when the table is absent or empty.
func storeConfigJSON(fc *config.Fold) ([]byte, error) {
	if len(fc.StoreConfig) == 0 {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(fc.StoreConfig)
	if err != nil {
		return nil, fmt.Errorf("store_config: %w", err)
	}
	return b, nil
}
