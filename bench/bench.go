package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
)

// Buckets the bench creates.
const (
	bucketMain  = "bench"       // -keys keys: every scenario but the small memory row
	bucketSmall = "bench_small" // -mem-small keys: the memory reference
)

// bench holds the environment of one run and the rows measured so far.
type bench struct {
	o         *options
	dir       string
	removeDir bool
	srv       *server.Server
	url       string
	pub       *publisher
	vals      *values
	backends  []*backend
	logger    *slog.Logger
	started   time.Time
	loadStart string // load average when the run started
	children  int    // child processes started, to name their profiles
	rows      []row
	phase     int // numbers live phases, so each uses its own hot key
	dumps     int // latency phases written to -latency-dump
	// changeIndex is the value index of the next change phase's first
	// put: each phase's values are told from those of the phases before.
	changeIndex int

	// Filled by the bootstrap rounds, used by later groups.
	foldDirs        map[string]string // backend -> a bootstrapped fold of the main bucket
	rounds          int               // bootstrap rounds run (-budget may cut -runs)
	bootstrapMedian time.Duration     // of the first backend's plugin bootstraps
	memRefs         []childResult     // the memory references measured so far
}

// newBench creates the work directory, starts NATS, finds the plugins and
// fills the main bucket.
func newBench(ctx context.Context, o *options) (b *bench, err error) {
	b = &bench{
		o: o, vals: newValues(1), started: time.Now(), loadStart: loadAverage(),
		logger:   newLogger(o.verbose, o.debug),
		foldDirs: map[string]string{},
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	b.dir = o.workDir
	if b.dir == "" {
		if b.dir, err = os.MkdirTemp("", "slipstream-bench-"); err != nil {
			return nil, err
		}
		b.removeDir = !o.keep
	} else if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, err
	}
	b.logf("work directory %s; %s; load average %s", b.dir, machine(), b.loadStart)
	for _, name := range o.backends {
		p, err := b.pluginBinary(ctx, name)
		if err != nil {
			return nil, err
		}
		b.backends = append(b.backends, &backend{name: name, plugin: p})
	}
	if b.srv, err = startNATS(filepath.Join(b.dir, "nats")); err != nil {
		return nil, err
	}
	b.url = b.srv.ClientURL()
	if b.pub, err = newPublisher(b.url, o.wait); err != nil {
		return nil, err
	}
	if err := b.fill(ctx, bucketMain, o.keys); err != nil {
		return nil, err
	}
	return b, nil
}

// pluginBinary finds slipstream-store-NAME in -bin, or builds it into the
// work directory when it is missing there.
func (b *bench) pluginBinary(ctx context.Context, name string) (string, error) {
	file := "slipstream-store-" + name
	p := filepath.Join(b.o.binDir, file)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return filepath.Abs(p)
	}
	out := filepath.Join(b.dir, "bin", file)
	b.logf("%s not found; building ./plugins/%s into %s", p, name, out)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "go", "build", "-o", out, "./plugins/"+name)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build plugin %s (run from the module root, or pass -bin): %v\n%s", name, err, msg)
	}
	return out, nil
}

// fill creates bucket and writes n distinct keys to it.
func (b *bench) fill(ctx context.Context, bucket string, n int) error {
	if _, err := createBucket(ctx, b.pub.js, bucket); err != nil {
		return err
	}
	start := time.Now()
	err := b.pub.publish(ctx, n, func(i int) (string, []byte) {
		return subject(bucket, keyOf(i)), b.vals.next()
	})
	if err != nil {
		return fmt.Errorf("fill %s: %w", bucket, err)
	}
	msgs, _, err := streamState(ctx, b.pub.js, bucket)
	if err != nil {
		return err
	}
	if msgs != uint64(n) {
		return fmt.Errorf("fill %s: stream holds %d messages, want %d", bucket, msgs, n)
	}
	d := time.Since(start)
	b.logf("filled %s: %d keys in %v (%s, PublishAsync window %d)", bucket, n, d.Round(time.Millisecond),
		fmtRate(float64(n)/d.Seconds(), "keys/s"), publishWindow)
	return nil
}

// overwrite publishes n overwrites of random existing keys of the main bucket.
func (b *bench) overwrite(ctx context.Context, n int) error {
	return b.pub.publish(ctx, n, func(int) (string, []byte) {
		return subject(bucketMain, keyOf(b.vals.rng.IntN(b.o.keys))), b.vals.next()
	})
}

// lastSeq is the main bucket's stream last sequence.
func (b *bench) lastSeq(ctx context.Context) (uint64, error) {
	_, last, err := streamState(ctx, b.pub.js, bucketMain)
	return last, err
}

// measure runs the selected groups in order.
func (b *bench) measure(ctx context.Context) error {
	o := b.o
	needFold := o.has("live") || o.has("reads") || o.has("changes")
	keep := needFold || o.has("artifact")
	if o.has("bootstrap") || o.has("boundary") || o.has("resume") || keep {
		if err := b.bootstraps(ctx, keep); err != nil {
			return err
		}
	}
	for _, be := range b.backends {
		if !needFold {
			break
		}
		if err := b.follow(ctx, be); err != nil {
			return err
		}
	}
	if o.has("memory") {
		if err := b.memory(ctx); err != nil {
			return err
		}
	}
	if o.has("artifact") {
		if err := b.artifacts(ctx); err != nil {
			return err
		}
	}
	b.memoryRefRow()
	return nil
}

// following is the bootstrapped fold of a backend, running, and the API
// over it.
type following struct {
	r   *foldRun
	api *apiServer
}

// startFollowing starts the bootstrapped fold of be, waits until it has
// caught up with the bucket, and serves the API over it.
func (b *bench) startFollowing(ctx context.Context, be *backend) (*following, error) {
	return b.startFollowingIn(ctx, be, viaPlugin)
}

// startFollowingIn is startFollowing with the store in mode: its plugin, or
// linked into this process.
func (b *bench) startFollowingIn(ctx context.Context, be *backend, mode launchMode) (*following, error) {
	last, err := b.lastSeq(ctx)
	if err != nil {
		return nil, err
	}
	r, err := b.startFold(ctx, "follow-"+be.name, be, mode, b.foldDirs[be.name], nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := r.waitSynced(ctx, last, 1, b.o.wait); err != nil {
		return nil, errors.Join(err, r.stop(time.Minute))
	}
	var api *apiServer
	err = labelled(ctx, "api-"+be.name, func(context.Context) error {
		api, err = serveAPI(r.f) // its connection goroutines inherit the label
		return err
	})
	if err != nil {
		return nil, errors.Join(err, r.stop(time.Minute))
	}
	return &following{r: r, api: api}, nil
}

func (f *following) stop() error { return errors.Join(f.api.close(), f.r.stop(time.Minute)) }

// follow runs the live, read and change groups against the bootstrapped
// fold of be. The live group runs in -runs rounds: the raw watcher's
// phases with the fold stopped, then the fold's, started on its directory
// and caught up first (not timed).
func (b *bench) follow(ctx context.Context, be *backend) (err error) {
	var f *following
	defer func() {
		if f != nil {
			err = errors.Join(err, f.stop())
		}
	}()
	if b.o.has("live") {
		var rounds []liveRound
		for round := 1; round <= b.o.runs; round++ {
			b.logf("live round %d of %d, %s", round, b.o.runs, be.name)
			if f != nil {
				err, f = f.stop(), nil
				if err != nil {
					return err
				}
			}
			raw, err := b.rawLive(ctx)
			if err != nil {
				return err
			}
			if f, err = b.startFollowing(ctx, be); err != nil {
				return err
			}
			l, err := b.foldLive(ctx, be, f.r, f.api, round == 1)
			if err != nil {
				return err
			}
			l.raw = raw
			if round == 1 {
				// The same fold with its store linked in: what the plugin
				// process adds to the latency.
				if err, f = f.stop(), nil; err != nil {
					return err
				}
				if l.inproc50, l.inproc99, err = b.inProcessLatency(ctx, be); err != nil {
					return err
				}
			}
			rounds = append(rounds, l)
		}
		b.liveRows(be, rounds)
	}
	if !b.o.has("reads") && !(b.o.has("changes") && be == b.backends[0]) {
		return nil
	}
	if f == nil {
		if f, err = b.startFollowing(ctx, be); err != nil {
			return err
		}
	}
	if b.o.has("reads") {
		if err := b.foldReads(ctx, be, f.r, f.api); err != nil {
			return err
		}
	}
	// The change stream on the first backend only: its path (the feed,
	// the API, the client) is the same for every store, and its phases
	// take long (BENCHMARKS.md).
	if b.o.has("changes") && be == b.backends[0] {
		return b.foldChanges(ctx, be, f.r, f.api)
	}
	return nil
}

// startFold starts a fold of the main bucket.
func (b *bench) startFold(ctx context.Context, label string, be *backend, mode launchMode, dir string,
	filters []string, t fold.Transform) (*foldRun, error) {
	return startFold(ctx, foldSpec{
		label: label, url: b.url, bucket: bucketMain, dir: dir, filters: filters,
		be: be, mode: mode, transform: t, logger: b.logger.With("scenario", label),
		batch: b.o.batch, config: b.o.storeConfig[be.name],
	})
}

// labelled runs fn with the pprof label scenario=name, so that the CPU
// profile can be cut by scenario.
func labelled(ctx context.Context, name string, fn func(context.Context) error) error {
	var err error
	pprof.Do(ctx, pprof.Labels("scenario", name), func(ctx context.Context) { err = fn(ctx) })
	return err
}

// rawKV opens a fresh connection to the main bucket for a raw baseline.
func (b *bench) rawKV(ctx context.Context, name string) (jetstream.KeyValue, func(), error) {
	nc, js, err := connect(b.url, "slipstream-bench-"+name)
	if err != nil {
		return nil, nil, err
	}
	kv, err := js.KeyValue(ctx, bucketMain)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return kv, nc.Close, nil
}

// close stops NATS and removes the work directory unless -keep or -dir.
func (b *bench) close() {
	if b.pub != nil {
		b.pub.close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if b.removeDir && b.dir != "" {
		if err := os.RemoveAll(b.dir); err != nil {
			b.logf("removing %s: %v", b.dir, err)
		}
	}
}

// newLogger logs warnings (a stall, a pebble write stall) on stderr, with
// verbose the info records that time each step of a fold, and with debug
// also the plugins' debug records (pebble's flushes and compactions).
func newLogger(verbose, debug bool) *slog.Logger {
	level := slog.LevelWarn
	switch {
	case debug:
		level = slog.LevelDebug
	case verbose:
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// logf prints a progress line on stderr; the table goes to stdout.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) add(r row) { b.rows = append(b.rows, r) }
