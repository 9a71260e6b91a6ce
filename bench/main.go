// Command slipstream-bench measures slipstream against a raw nats.go consumer
// of the same bucket in the same run and prints one table: each row is a
// scenario, slipstream's figure, the baseline's figure, their ratio, the
// target and whether it was met.
//
// It creates its own workload on an embedded NATS server (loopback only):
// keys of 39 bytes, values of 200 random alphanumerics, a bucket with
// History 1. Folds run through the store plugin binaries, in process, or
// with a WASM transform; the memory rows run the fold in a child process
// (this binary re-executed) so that the measured process holds no server.
//
// A missed target is a result, not a failure: the program exits non-zero
// only when it cannot measure (a fold fails, NATS refuses, a wait times
// out). Every loop is bounded in count and time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/slipstreamkv/slipstream/host/fold"
)

// options are the command-line settings of one run.
type options struct {
	keys          int
	memSmall      int
	runs          int
	artifactRuns  int
	liveRate      int
	liveFor       time.Duration
	latencyDump   string
	liveUpdates   int
	resumeUpdates int
	readFor       time.Duration
	readClients   int
	readHot       int
	changes       int
	changeRate    int
	subscribers   int
	poll          time.Duration
	wait          time.Duration
	budget        time.Duration
	backends      []string
	only          []string
	binDir        string
	transform     string
	workDir       string
	keep          bool
	cpuProfile    string
	smoke         bool
	verbose       bool
	debug         bool
	batch         int
	storeConfig   map[string]string // backend -> store_config JSON
}

// groups are the scenario groups -only selects from, in the order they run.
var groups = []string{"bootstrap", "boundary", "live", "resume", "reads", "changes", "memory", "artifact"}

// has reports whether -only selects group.
func (o *options) has(group string) bool { return slices.Contains(o.only, group) }

// smokeDefaults are the sizes -smoke uses for the flags not set explicitly.
var smokeDefaults = map[string]string{
	"keys": "2000", "mem-small": "500", "runs": "1", "live-for": "300ms",
	"live-updates": "2000", "resume-updates": "100", "read-for": "150ms", "wait": "45s",
	"changes": "1000",
}

func main() {
	if child := childMode(); child != "" {
		os.Exit(runChild(child, os.Args[2:]))
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipstream-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "slipstream-bench:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line; -smoke fills in its sizes for the
// flags not given.
func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("slipstream-bench", flag.ContinueOnError)
	o := &options{}
	var backends, only string
	fs.IntVar(&o.keys, "keys", 1_000_000, "keys in the bucket: bootstraps, resume, live and the large memory row")
	fs.IntVar(&o.memSmall, "mem-small", 100_000, "keys of the small memory row (the RSS reference)")
	fs.IntVar(&o.runs, "runs", 3, "runs of every measurement that decides a target, each beside a run of its baseline; the table shows medians and spreads")
	fs.IntVar(&o.artifactRuns, "artifact-runs", 0, "exports and imports of each backend in the artifact group (0: -runs)")
	fs.IntVar(&o.liveRate, "live-rate", 1000, "puts per second of the live latency phases")
	fs.DurationVar(&o.liveFor, "live-for", 3*time.Second, "duration of each live latency phase (-runs of them per backend)")
	fs.IntVar(&o.liveUpdates, "live-updates", 50_000, "overwrites published by each live throughput phase (-runs of them per backend)")
	fs.IntVar(&o.resumeUpdates, "resume-updates", 1000, "updates made while a fold is stopped, before the resume")
	fs.DurationVar(&o.readFor, "read-for", 2*time.Second, "duration of each read phase (-runs rounds of five phases per backend)")
	fs.IntVar(&o.readClients, "read-clients", 8, "concurrent readers of the read phases")
	fs.IntVar(&o.readHot, "read-hot", 100_000, "keys of the hot set the cached read rows read (must fit the fold's default read cache)")
	fs.IntVar(&o.changes, "changes", 20_000, "puts of distinct keys each change-stream phase delivers (at most half of -keys; -runs rounds of two phases)")
	fs.IntVar(&o.changeRate, "change-rate", 2000, "puts per second of the change-stream phases (on the first of -backends)")
	fs.IntVar(&o.subscribers, "subscribers", 10, "subscribers of the change-stream phases (and raw watchers of their baseline)")
	fs.DurationVar(&o.poll, "poll", 250*time.Microsecond, "pause between polls of the live latency observers")
	fs.DurationVar(&o.wait, "wait", 5*time.Minute, "longest wait for any one fold or phase before the run fails")
	fs.DurationVar(&o.budget, "budget", 14*time.Minute, "with -runs above 3, run fewer bootstrap rounds (never fewer than 3) when more would not fit in this time (0: no limit)")
	fs.StringVar(&backends, "backends", "pebble,sqlite", "store backends to measure")
	fs.StringVar(&only, "only", strings.Join(groups, ","), "scenario groups to run: "+strings.Join(groups, ","))
	fs.StringVar(&o.binDir, "bin", "bin", "directory of the built plugins (slipstream-store-NAME) and transforms/")
	fs.StringVar(&o.transform, "transform", "", "keep-all WASM module (default BIN/transforms/keepall.wasm)")
	fs.StringVar(&o.workDir, "dir", "", "work directory for NATS and fold data (default: a new temp dir, removed at exit)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory")
	fs.StringVar(&o.latencyDump, "latency-dump", "", "write each live latency phase's puts (start, latency, revision) as CSV files into this directory")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process to the file; scenarios carry a pprof label")
	fs.BoolVar(&o.smoke, "smoke", false, "tiny sizes and short phases, to prove the program works")
	fs.IntVar(&o.batch, "batch", 0, "the folds' batch.max_entries (0: the fold's default)")
	pebbleConfig := fs.String("pebble-config", "{}", "store_config of the pebble folds, as JSON")
	sqliteConfig := fs.String("sqlite-config", "{}", "store_config of the sqlite folds, as JSON")
	fs.BoolVar(&o.debug, "debug", false, "log debug records too, the plugins' among them (pebble's flushes and compactions), on stderr")
	fs.BoolVar(&o.verbose, "v", false, "log the folds' and plugins' info records (timestamps of each step) on stderr")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: slipstream-bench [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.smoke {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range smokeDefaults {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	o.storeConfig = map[string]string{"pebble": *pebbleConfig, "sqlite": *sqliteConfig}
	o.backends = splitList(backends)
	o.only = splitList(only)
	for _, b := range o.backends {
		if _, ok := backendStores[b]; !ok {
			return nil, fmt.Errorf("-backends: unknown backend %q (pebble, sqlite)", b)
		}
	}
	for _, g := range o.only {
		if !slices.Contains(groups, g) {
			return nil, fmt.Errorf("-only: unknown group %q (%s)", g, strings.Join(groups, ", "))
		}
	}
	switch {
	case o.keys < 10 || o.memSmall < 10:
		return nil, errors.New("-keys and -mem-small must be at least 10")
	case o.runs < 1 || o.runs > 20:
		return nil, errors.New("-runs must be from 1 to 20")
	case o.artifactRuns < 0 || o.artifactRuns > 20:
		return nil, errors.New("-artifact-runs must be from 0 to 20")
	case o.liveRate < 1 || o.liveRate > 20_000:
		return nil, errors.New("-live-rate must be from 1 to 20000")
	case o.readClients < 1 || o.readClients > 256:
		return nil, errors.New("-read-clients must be from 1 to 256")
	case o.readHot < 1:
		return nil, errors.New("-read-hot must be positive")
	case hotBytes(min(o.readHot, o.keys)) > fold.DefaultReadCache:
		return nil, fmt.Errorf("-read-hot: %d keys take %.1f MiB of the read cache, which holds %d MiB",
			min(o.readHot, o.keys), float64(hotBytes(min(o.readHot, o.keys)))/(1<<20), fold.DefaultReadCache>>20)
	case o.changes < 1 || o.changeRate < 1 || o.changeRate > 100_000:
		return nil, errors.New("-changes must be positive and -change-rate from 1 to 100000")
	case o.subscribers < 1 || o.subscribers > 100:
		return nil, errors.New("-subscribers must be from 1 to 100")
	case o.liveFor <= 0 || o.readFor <= 0 || o.wait <= 0 || o.poll < 0 || o.budget < 0:
		return nil, errors.New("durations must be positive")
	case o.batch < 0:
		return nil, errors.New("-batch must not be negative")
	case o.liveUpdates < 1 || o.resumeUpdates < 1:
		return nil, errors.New("-live-updates and -resume-updates must be positive")
	}
	if o.transform == "" {
		o.transform = filepath.Join(o.binDir, "transforms", "keepall.wasm")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// startCPUProfile writes a CPU profile of this process to path until
// stop is called.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// run measures every selected group and prints the table.
func run(ctx context.Context, o *options) (err error) {
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	b, err := newBench(ctx, o)
	if err != nil {
		return err
	}
	defer b.close()
	start := time.Now()
	if err := b.measure(ctx); err != nil {
		return err
	}
	b.printTable(os.Stdout, time.Since(start))
	return nil
}

// loadAverage is the 1-, 5- and 15-minute load average: on a shared machine
// it says how much of it the run had.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// machine describes the host for the table's header.
func machine() string {
	cpu := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	mem := ""
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb); err == nil {
					mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
				}
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, GOMAXPROCS=%d, %s %s/%s",
		runtime.NumCPU(), cpu, mem, runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
