package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	pebblestore "github.com/slipstreamkv/slipstream/plugins/pebble/store"
	sqlitestore "github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

// backendStores makes an in-process store of each backend, for the plugin
// boundary rows.
var backendStores = map[string]func() sdk.Store{
	"pebble": func() sdk.Store { return pebblestore.New() },
	"sqlite": func() sdk.Store { return sqlitestore.New() },
}

// backend is one store backend under test.
type backend struct {
	name   string
	plugin string // the plugin binary
}

// launchMode says how a fold reaches its store.
type launchMode int

const (
	viaPlugin launchMode = iota // the plugin binary, over go-plugin gRPC
	inProcess                   // the store package linked into this process
)

// foldSpec describes one fold to run.
type foldSpec struct {
	label     string // pprof label and log name
	url       string // NATS
	bucket    string
	dir       string
	filters   []string
	be        *backend
	mode      launchMode
	transform fold.Transform
	logger    *slog.Logger
	batch     int    // fold MaxEntries; 0: the default
	config    string // store_config JSON; "": {}
}

// foldRun is a running fold with what the bench observes of it.
type foldRun struct {
	spec   foldSpec
	f      *fold.Fold
	reg    *prometheus.Registry
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, set before done closes
	start  time.Time
	cpu0   time.Duration
	procs  *procTracker
}

// startFold connects, creates the fold and starts Run. Everything it starts
// (the NATS client's goroutines, the fold's goroutines, in-process store
// calls) carries the pprof label scenario=spec.label.
func startFold(ctx context.Context, spec foldSpec) (*foldRun, error) {
	r := &foldRun{spec: spec, reg: prometheus.NewRegistry(), done: make(chan struct{}), procs: &procTracker{}}
	var err error
	pprof.Do(ctx, pprof.Labels("scenario", spec.label), func(ctx context.Context) {
		var js jetstream.JetStream
		r.nc, js, err = connect(spec.url, "slipstream-bench-"+spec.label)
		if err != nil {
			return
		}
		r.f = fold.New(r.config(), js)
		runCtx, cancel := context.WithCancel(ctx)
		r.cancel = cancel
		r.cpu0 = selfCPU()
		r.start = time.Now()
		go func() {
			defer close(r.done)
			r.err = r.f.Run(runCtx)
		}()
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// config is the fold's configuration: the spec's, with the run's launcher
// and metrics.
func (r *foldRun) config() fold.Config {
	spec := r.spec
	storeConfig := spec.config
	if storeConfig == "" {
		storeConfig = "{}"
	}
	return fold.Config{
		Name: "bench", Bucket: spec.bucket, Filters: spec.filters, Dir: spec.dir,
		StoreConfig: []byte(storeConfig), Launch: r.launcher(), Transform: spec.transform,
		MaxEntries: spec.batch, Logger: spec.logger, Metrics: fold.NewMetrics(r.reg),
	}
}

// launcher starts the spec's store: the plugin binary, tracked, or a new
// in-process store.
func (r *foldRun) launcher() fold.Launcher {
	be, logger := r.spec.be, r.spec.logger
	if r.spec.mode == inProcess {
		return func(context.Context) (fold.Handle, error) {
			s := backendStores[be.name]()
			if ls, ok := s.(sdk.LoggerSetter); ok {
				ls.SetLogger(logger)
			}
			return fold.InProcess(s), nil
		}
	}
	return func(ctx context.Context) (fold.Handle, error) {
		start := time.Now()
		p, err := pluginhost.Launch(ctx, pluginhost.Config{Path: be.plugin, Logger: logger.With("plugin", be.name)})
		if err != nil {
			return nil, err
		}
		r.procs.step(&r.procs.launch, time.Since(start))
		return &trackedPlugin{Plugin: p, t: r.procs}, nil
	}
}

// waitSynced waits until the fold is ready with its cursor at or past last
// and its published generation at least minGen, and returns the time since
// Run started.
func (r *foldRun) waitSynced(ctx context.Context, last uint64, minGen int, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			return 0, fmt.Errorf("%s: fold stopped before it was ready: %v", r.spec.label, r.err)
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		if r.f.Ready() {
			at := time.Since(r.start)
			st := r.f.Status(ctx)
			if st.Ready && st.Cursor >= last && st.Generation >= minGen {
				return at, nil
			}
		}
		// Poll at 0.5% of the time so far: a fine resolution for a short
		// resume, few wake-ups during a long bootstrap.
		time.Sleep(min(max(time.Since(r.start)/200, 100*time.Microsecond), 5*time.Millisecond))
	}
	st := r.f.Status(ctx)
	return 0, fmt.Errorf("%s: not ready after %v: state %s %s, cursor %d, want %d, generation %d",
		r.spec.label, timeout, st.State, st.Reason, st.Cursor, last, st.Generation)
}

// cursor is the committed cursor, read from the fold's metrics (no store
// call, so polling it does not load the store).
func (r *foldRun) cursor() uint64 {
	v, _ := metricValue(r.reg, "slipstream_fold_cursor")
	return uint64(v)
}

// stop ends Run and waits for it.
func (r *foldRun) stop(timeout time.Duration) error {
	r.cancel()
	defer r.nc.Close()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		return fmt.Errorf("%s: fold did not stop within %v", r.spec.label, timeout)
	}
}

// applyStats is a snapshot of the fold's Apply counters.
type applyStats struct {
	batches uint64
	applied float64
	seconds float64
}

func (r *foldRun) applyStats() applyStats {
	sum, n := histogram(r.reg, "slipstream_fold_apply_seconds")
	applied, _ := metricValue(r.reg, "slipstream_fold_applied_total")
	return applyStats{batches: n, applied: applied, seconds: sum}
}

// since describes the batches committed between then and s.
func (s applyStats) since(then applyStats) string {
	n := s.batches - then.batches
	if n == 0 {
		return "no batches"
	}
	return fmt.Sprintf("%d batches, %.1f mutations/batch, Apply %.2f ms/batch", n,
		(s.applied-then.applied)/float64(n), 1000*(s.seconds-then.seconds)/float64(n))
}

// usage describes what a fold run cost, for the detail log.
type usage struct {
	wall      time.Duration
	hostCPU   time.Duration // this whole process, the embedded NATS server included
	pluginCPU time.Duration // plugin processes that were shut down
	applySum  float64       // seconds spent in Apply
	batches   uint64
	steps     string // plugin launch and open times
}

// usage is what the run cost so far, with wall as its wall time.
func (r *foldRun) usage(wall time.Duration) usage {
	sum, n := histogram(r.reg, "slipstream_fold_apply_seconds")
	cpu, _ := r.procs.totals()
	return usage{wall: wall, hostCPU: selfCPU() - r.cpu0, pluginCPU: cpu, applySum: sum, batches: n, steps: r.procs.steps()}
}

func (u usage) String() string {
	s := fmt.Sprintf("wall %v, process CPU %v", u.wall.Round(time.Millisecond), u.hostCPU.Round(time.Millisecond))
	if u.pluginCPU > 0 {
		s += fmt.Sprintf(", plugin CPU %v", u.pluginCPU.Round(time.Millisecond))
	}
	s += u.steps
	if u.batches > 0 && u.wall > 0 {
		// A batch's time runs from its send to its commit; batches on the
		// apply pipe overlap, so the sum can pass the wall time.
		s += fmt.Sprintf(", %d batches, Apply in flight %.0f%% of wall (%.2f ms/batch, send to commit)",
			u.batches, 100*u.applySum/u.wall.Seconds(), 1000*u.applySum/float64(u.batches))
	}
	return s
}

// trackedPlugin is a plugin whose CPU time and peak RSS are recorded when it
// is shut down.
type trackedPlugin struct {
	*pluginhost.Plugin
	t *procTracker
}

// Open times the store's Open.
func (p *trackedPlugin) Open(ctx context.Context, dir string, config []byte) (sdk.State, error) {
	start := time.Now()
	st, err := p.Plugin.Open(ctx, dir, config)
	p.t.step(&p.t.open, time.Since(start))
	return st, err
}

// Shutdown records the process's usage, then shuts it down.
func (p *trackedPlugin) Shutdown(ctx context.Context) error {
	if pid := p.Pid(); pid > 0 {
		p.t.observe(pid)
	}
	return p.Plugin.Shutdown(ctx)
}

// procTracker sums the CPU time and keeps the largest peak RSS of the
// processes it observed, and times their launches and Opens.
type procTracker struct {
	mu     sync.Mutex
	cpu    time.Duration
	hwmKB  int64
	launch time.Duration // pluginhost.Launch: process start and handshake
	open   time.Duration // the store's Open, over gRPC
}

func (t *procTracker) step(sum *time.Duration, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	*sum += d
}

// steps describes the launch and open time, for the detail log.
func (t *procTracker) steps() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.launch == 0 {
		return ""
	}
	return fmt.Sprintf(", plugin launch %v, store open %v", t.launch.Round(100*time.Microsecond), t.open.Round(100*time.Microsecond))
}

func (t *procTracker) observe(pid int) {
	cpu, _ := procCPU(pid)
	hwm, _ := procHWM(pid)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cpu += cpu
	t.hwmKB = max(t.hwmKB, hwm)
}

func (t *procTracker) totals() (time.Duration, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cpu, t.hwmKB
}

// selfCPU is this process's user plus system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times on Linux.
const clockTicks = 100

// procCPU reads the user plus system CPU time of a process.
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	// After the command name: state is field 3, utime 14, stime 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procHWM reads a process's peak resident set size (VmHWM) in KiB.
func procHWM(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM in status")
}

// metricValue reads the first sample of a gauge or counter family.
func metricValue(g prometheus.Gatherer, name string) (float64, bool) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// histogram reads the sum and count of the first histogram of a family.
func histogram(g prometheus.Gatherer, name string) (float64, uint64) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleSum(), h.GetSampleCount()
		}
	}
	return 0, 0
}
