// Package service runs a slipstream configuration: the NATS connection (or
// the embedded server), every fold with its store plugin and transform
// chain, and the local HTTP API.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/slipstreamkv/slipstream/host/api"
	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/host/chain"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/connect"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/front"
	"github.com/slipstreamkv/slipstream/host/objstore"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/valyala/fasthttp"
)

// PluginPrefix is the file name prefix of store plugin binaries.
const PluginPrefix = "slipstream-store-"

// Options adjust a service beyond its config; tests use them.
type Options struct {
	// CheckEvery overrides the folds' live guard period.
	CheckEvery time.Duration
	// Producer names the program in the artifacts it exports, such as
	// "slipstream 1.2.0".
	Producer string
	// PublishWindow overrides the Object Store publish window (see
	// objstore.Options), and PruneGrace every periodic export's prune
	// grace; tests shorten both, which the config does not allow.
	PublishWindow time.Duration
	PruneGrace    time.Duration
}

// Service is a running configuration.
type Service struct {
	cfg  *config.Config
	log  *slog.Logger
	opts Options

	emb      *connect.Embedded
	nc       *nats.Conn
	js       jetstream.JetStream
	reg      *prometheus.Registry
	metrics  *fold.Metrics
	exportM  *exportMetrics // created with the first exporter
	series   *series
	listener net.Listener
	serving  bool // Run's server owns the listener

	// mu guards folds, the running folds in config order, and the API
	// handler built over them; reloadMu serializes reloads.
	mu       sync.Mutex
	folds    []*foldRun
	handler  atomic.Pointer[api.Routes]
	reloadMu sync.Mutex
	// Set by Run: the context folds run under, and what waits for them.
	runCtx context.Context
	runWG  sync.WaitGroup
}

// foldRun is one fold of the running config: the fold, its periodic
// export, what closes its transform chain, and, once Run drives it, how to
// stop it and its result.
type foldRun struct {
	cfg   config.Fold
	f     *fold.Fold
	exp   *exporter
	close func() // the transform chain's, or nil

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start connects (or starts the embedded server), opens the buckets,
// prepares every fold and binds the HTTP listener. Run then drives them.
// Every step honours ctx, so an interrupt during a slow start ends it at
// once. A failure is an error naming what failed; whatever was started
// before it is stopped again.
func Start(ctx context.Context, cfg *config.Config, logger *slog.Logger, opts Options) (*Service, error) {
	s := &Service{cfg: cfg, log: logger, opts: opts, reg: prometheus.NewRegistry()}
	if err := s.start(ctx); err != nil {
		s.close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted while starting: %w", err)
		}
		return nil, err
	}
	return s, nil
}

func (s *Service) start(ctx context.Context) error {
	cfg, logger := s.cfg, s.log
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The HTTP address is bound first: it fails fastest and starts nothing
	// that needs stopping.
	if cfg.HTTP.Listen != config.HTTPOff {
		l, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http api: cannot listen on %s: %w", cfg.HTTP.Listen, listenCause(err))
		}
		if cfg.HTTP.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
			if err != nil {
				_ = l.Close()
				return fmt.Errorf("http api: tls_cert and tls_key: %w", err)
			}
			l = front.TLSListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		}
		s.listener = l
	}
	url := cfg.NATS.URL
	if url == "" {
		storeDir := cfg.NATS.StoreDir
		if storeDir == "" {
			storeDir = filepath.Join(cfg.DataDir, "nats")
		}
		emb, err := connect.StartEmbedded(ctx, cfg.NATS.Listen, storeDir, logger)
		if err != nil {
			return err
		}
		s.emb = emb
		url = emb.URL()
		logger.Info("embedded NATS server started", "url", url, "store_dir", storeDir)
	}
	nc, err := connect.Dial(ctx, url, cfg.NATS, logger)
	if err != nil {
		return err
	}
	s.nc = nc
	jsOpts := []jetstream.JetStreamOpt{}
	if cfg.NATS.RequestTimeout > 0 {
		jsOpts = append(jsOpts, jetstream.WithDefaultTimeout(time.Duration(cfg.NATS.RequestTimeout)))
	}
	if s.js, err = jetstream.New(s.nc, jsOpts...); err != nil {
		return fmt.Errorf("nats: jetstream: %w", err)
	}
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "slipstream_nats_connected",
		Help: "1 while the NATS connection is up, 0 while it is down (reconnecting or closed)."}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	}))
	s.series = newSeries(s.js, objstore.Options{
		TempDir: filepath.Join(cfg.DataDir, "tmp"), PublishWindow: s.opts.PublishWindow,
	})
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "tmp"), 0o755); err != nil {
		return err
	}
	s.metrics = fold.NewMetrics(s.reg)
	for i := range cfg.Folds {
		fr, err := s.prepareFold(ctx, &cfg.Folds[i])
		if err != nil {
			return err
		}
		s.folds = append(s.folds, fr)
	}
	return nil
}

// prepareFold makes the fold of fc, with its transform chain and export,
// ready to run: its bucket exists and its directory is locked.
func (s *Service) prepareFold(ctx context.Context, fc *config.Fold) (*foldRun, error) {
	fr := &foldRun{cfg: *fc}
	f, closeChain, err := s.newFold(ctx, fc)
	if err != nil {
		return nil, fmt.Errorf("fold %s: %w", fc.Name, err)
	}
	fr.f, fr.close = f, closeChain
	if fc.Export.To != "" {
		if s.exportM == nil {
			s.exportM = newExportMetrics(s.reg)
		}
		if fr.exp, err = s.newExporter(f, fc.Export, s.exportM); err != nil {
			fr.release()
			return nil, fmt.Errorf("fold %s: export: %w", fc.Name, err)
		}
	}
	return fr, nil
}

// release closes what prepareFold opened, for a fold that does not run
// (or no longer does).
func (fr *foldRun) release() {
	fr.f.Close()
	if fr.close != nil {
		fr.close()
	}
}

// listenCause drops the "listen tcp ADDR:" prefix of a listen error, which
// the caller's message already names.
func listenCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// newFold builds the fold of fc and opens its directory; the function it
// returns closes its transform chain (nil when it has none).
func (s *Service) newFold(ctx context.Context, fc *config.Fold) (_ *fold.Fold, closeChain func(), err error) {
	var settings *config.Bucket
	if b, ok := s.cfg.Buckets[fc.Bucket]; ok {
		settings = &b
	}
	bin, err := ResolvePlugin(s.cfg.PluginDir, fc.Store)
	if err != nil {
		return nil, nil, err
	}
	if _, err := connect.OpenBucket(ctx, s.js, fc.Bucket, settings); err != nil {
		return nil, nil, err
	}
	storeCfg, err := storeConfigJSON(fc)
	if err != nil {
		return nil, nil, err
	}
	logger := s.log.With("fold", fc.Name)
	fcfg := fold.Config{
		Name: fc.Name, Bucket: fc.Bucket, Filters: fc.Scope,
		Dir:         filepath.Join(s.cfg.DataDir, "folds", fc.Name),
		StoreConfig: storeCfg,
		Launch: func(ctx context.Context) (fold.Handle, error) {
			return pluginhost.Launch(ctx, pluginhost.Config{Path: bin, Logger: logger})
		},
		MaxEntries:       fc.Batch.MaxEntries,
		MaxBytes:         int(fc.Batch.MaxBytes),
		Window:           time.Duration(fc.Batch.Window),
		CheckEvery:       s.opts.CheckEvery,
		TombstoneHorizon: time.Duration(fc.TombstoneHorizon),
		ReconcileEvery:   time.Duration(fc.ReconcileEvery),
		NoBulkLoad:       !fc.BulkLoad,
		ReadCache:        offIfZero(int64(fc.ReadCache)),
		ChangeBuffer:     offIfZero(int64(fc.ChangeBuffer)),
		Logger:           s.log,
		Metrics:          s.metrics,
	}
	if src := fc.BootstrapFrom; src != "" {
		fcfg.BootstrapName = src
		fcfg.Bootstrap = func(ctx context.Context) (io.ReadCloser, error) { return s.openSource(ctx, src) }
	}
	if len(fc.Transforms) > 0 {
		t, err := chain.New(ctx, chain.Config{
			Fold: fc.Name, Modules: fc.Transforms, CacheDir: filepath.Join(s.cfg.DataDir, "wasm-cache"),
			Logger: logger, Registerer: s.reg,
		})
		if err != nil {
			return nil, nil, err
		}
		closeChain = func() { _ = t.Close(context.Background()) }
		fcfg.Transform = t
	}
	f := fold.New(fcfg, s.js)
	if err := f.Open(); err != nil {
		if closeChain != nil {
			closeChain()
		}
		return nil, nil, err
	}
	return f, closeChain, nil
}

// offIfZero maps a config bound, where 0 is off, to a fold.Config one,
// where 0 is the default and a negative value is off.
func offIfZero(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// ResolvePlugin finds the binary for a fold's store: a path when it contains
// a '/', else slipstream-store-NAME in dir (when set), beside the running
// executable, or on $PATH.
func ResolvePlugin(dir, store string) (string, error) {
	if strings.Contains(store, "/") {
		if _, err := os.Stat(store); err != nil {
			return "", fmt.Errorf("store plugin %s: %w", store, err)
		}
		return store, nil
	}
	name := PluginPrefix + store
	var tried []string
	var dirs []string
	if dir != "" {
		dirs = append(dirs, dir)
	} else if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
		tried = append(tried, p)
	}
	if dir == "" {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		tried = append(tried, "$PATH")
	}
	return "", fmt.Errorf("store plugin %q not found (looked for %s in %s)", store, name, strings.Join(tried, ", "))
}

// Folds are the service's folds, in config order (as of the last reload).
func (s *Service) Folds() []*fold.Fold {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*fold.Fold, len(s.folds))
	for i, fr := range s.folds {
		out[i] = fr.f
	}
	return out
}

// JetStream is the service's JetStream context.
func (s *Service) JetStream() jetstream.JetStream { return s.js }

// NATSURL is the URL of the embedded server, or "" when connected elsewhere.
func (s *Service) NATSURL() string {
	if s.emb == nil {
		return ""
	}
	return s.emb.URL()
}

// HTTPAddr is the address the API listens on, or "" when it is off.
func (s *Service) HTTPAddr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Run drives every fold and serves the API until ctx ends, then commits the
// folds' open batches, stops the plugins and closes the connection.
func (s *Service) Run(ctx context.Context) error {
	defer s.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.runCtx = ctx
	for _, fr := range s.folds {
		s.launch(fr)
	}
	s.mu.Unlock()
	var srv *front.Server
	httpErr := make(chan error, 1)
	if s.listener != nil {
		s.mu.Lock()
		s.buildHandler()
		s.mu.Unlock()
		srv = front.New(front.Options{
			Read: func(ctx *fasthttp.RequestCtx) bool { return s.handler.Load().Read(ctx) },
			HTTP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.handler.Load().HTTP.ServeHTTP(w, r)
			}),
			Log: s.log,
		})
		s.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "slipstream_http_fast_reads_total",
				Help: "Key reads (GET of a key, no query) answered by the API's fast server.",
			}, func() float64 { n, _ := srv.Counts(); return float64(n) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "slipstream_http_handovers_total",
				Help: "API connections the fast server handed to net/http, at their first request of another kind.",
			}, func() float64 { _, n := srv.Counts(); return float64(n) }),
		)
		s.serving = true
		go func() { httpErr <- srv.Serve(s.listener) }()
		tlsOn := s.cfg.HTTP.TLSCert != ""
		s.log.Info("http api listening", "addr", s.HTTPAddr(), "tls", tlsOn, "token", s.cfg.HTTP.Token != "")
		if s.cfg.HTTP.AllowRemote && !tlsOn {
			s.log.Warn("http api: allow_remote without tls_cert and tls_key: the bearer token and the data cross the network in clear text")
		}
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-httpErr:
		err = fmt.Errorf("http: %w", err)
		cancel()
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	s.reloadMu.Lock() // no reload starts a fold now
	defer s.reloadMu.Unlock()
	s.runWG.Wait()
	s.mu.Lock()
	errs := []error{err}
	for _, fr := range s.folds {
		errs = append(errs, fr.err)
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// launch runs fr's fold and its export under the service's run context.
// s.mu is held.
func (s *Service) launch(fr *foldRun) {
	ctx, cancel := context.WithCancel(s.runCtx)
	fr.cancel, fr.done = cancel, make(chan struct{})
	s.runWG.Add(1)
	go func() {
		defer s.runWG.Done()
		defer close(fr.done)
		var wg sync.WaitGroup
		if fr.exp != nil {
			wg.Go(func() { fr.exp.run(ctx) })
		}
		fr.err = fr.f.Run(ctx)
		cancel()
		wg.Wait()
		if fr.close != nil {
			fr.close()
		}
	}()
}

// buildHandler makes the API over the current folds the one served. s.mu
// is held.
func (s *Service) buildHandler() {
	folds := make([]*fold.Fold, len(s.folds))
	for i, fr := range s.folds {
		folds[i] = fr.f
	}
	h := api.New(folds, s.reg, api.Options{
		Producer: s.opts.Producer, TempDir: filepath.Join(s.cfg.DataDir, "tmp"), Publish: s.Publish,
		Reload: func(ctx context.Context) (any, error) { return s.ReloadFile(ctx) }, Stopping: s.runCtx,
	})
	if s.cfg.HTTP.Token != "" {
		h = h.WithToken(string(s.cfg.HTTP.Token))
	}
	s.handler.Store(&h)
}

func (s *Service) close() {
	if s.listener != nil && !s.serving {
		_ = s.listener.Close()
	}
	s.mu.Lock()
	for _, fr := range s.folds {
		if fr.done == nil { // prepared, never run
			fr.release()
		}
	}
	s.mu.Unlock()
	if s.nc != nil {
		_ = s.nc.Drain()
		s.nc.Close()
	}
	if s.emb != nil {
		s.emb.Shutdown()
	}
}

// Import fills the fold named name of a stopped service's config from the
// artifact at src, a file, a peer's http(s):// URL or an Object Store
// series (see fold.Import): it connects to NATS (or starts the embedded
// server on its data) to read a series and to check the artifact against
// the bucket's stream, and leaves the fold to resume at the artifact's
// cursor on the next run. The HTTP API is not started; a running service
// holding the fold's directory (or the embedded server's port) makes it
// fail.
func Import(ctx context.Context, cfg *config.Config, logger *slog.Logger, name, src string) (artifact.Manifest, error) {
	c := *cfg
	c.HTTP.Listen = config.HTTPOff
	fc, ok := c.Fold(name)
	if !ok {
		return artifact.Manifest{}, fmt.Errorf("the config has no fold named %q", name)
	}
	c.Folds = []config.Fold{*fc}
	s, err := Start(ctx, &c, logger, Options{})
	if err != nil {
		return artifact.Manifest{}, err
	}
	defer s.close()
	r, err := s.openSource(ctx, src)
	if err != nil {
		return artifact.Manifest{}, err
	}
	defer r.Close()
	return s.folds[0].f.Import(ctx, r)
}
