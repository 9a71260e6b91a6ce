// Command slipstream-crash drives the real slipstream binary and its store
// plugins from outside and injects faults, scenario by scenario:
//
//   - host-kill: SIGKILL the host under live writes; its plugin processes
//     must exit on their own (orphans are counted); restart it.
//   - plugin-kill: SIGKILL the folds' store plugin processes under live
//     writes and reads.
//   - nats-kill: SIGKILL the nats-server and restart it on the same port and
//     store directory after a short pause.
//   - conn-cut: reset every connection slipstream has to NATS through a TCP
//     proxy of this program, and refuse new ones for about a second.
//   - cluster-leader: a 3-node cluster and a bucket with 3 replicas; SIGKILL
//     the node leading the bucket's stream (the first time while the folds
//     bootstrap), and restart it.
//
// A writer puts, deletes and purges keys of a key space of about 2000 keys
// while faults come and go. After each cycle, once recovered, the writer
// pauses, the folds catch up with the stream's last sequence, and each fold
// is compared with the bucket independently of slipstream's own verify: the
// bucket is listed with nats.go, the fold through the HTTP API, and every
// key missing, extra, or with another value or revision is a divergence.
// Then random keys are read, each of which must answer 200 with the right
// value and revision, or 404 for a deleted key. A reader runs all along
// while the host is up; any answer but 200 (with a value the key had at that
// revision), 404 or 503 is an outage error.
//
// Everything listens on 127.0.0.1 only, on free ports; the temp directory is
// removed and every child process killed at exit, also on failure. The
// program exits 1 on any divergence, failed read, outage error or orphaned
// plugin, or when it cannot run a scenario to its end; 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings of one run.
type options struct {
	binDir        string
	natsServer    string
	cycles        int
	scenarios     []string
	stores        []string
	smoke         bool
	seed          uint64
	keys          int
	bootstrapKeys int
	rate          int
	reads         int
	wait          time.Duration
	keep          bool
	verbose       bool
}

// smokeDefaults are the sizes -smoke uses for the flags not set explicitly.
var smokeDefaults = map[string]string{
	"cycles": "1", "keys": "200", "bootstrap-keys": "2000", "rate": "200",
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "slipstream-crash:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }() // a second interrupt ends the program at once
	os.Exit(run(ctx, o))
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("slipstream-crash", flag.ContinueOnError)
	o := &options{}
	var scen, store string
	var seed int64
	fs.StringVar(&o.binDir, "bin", "bin", "directory of slipstream and the store plugins slipstream-store-NAME")
	fs.StringVar(&o.natsServer, "nats-server", "", "nats-server binary (default .cache/tools/nats-server, else nats-server on $PATH)")
	fs.IntVar(&o.cycles, "cycles", 20, "fault cycles per scenario")
	fs.StringVar(&scen, "scenarios", strings.Join(scenarioNames(), ","), "scenarios to run, in order: "+strings.Join(scenarioNames(), ","))
	fs.StringVar(&store, "store", "both", "store plugins of the folds: sqlite, pebble or both (one fold each, in the same host)")
	fs.BoolVar(&o.smoke, "smoke", false, "1 cycle per scenario, small data: prove the program works")
	fs.Int64Var(&seed, "seed", 0, "random seed (0: from the clock; the run prints it)")
	fs.IntVar(&o.keys, "keys", 2000, "key space of the writer")
	fs.IntVar(&o.bootstrapKeys, "bootstrap-keys", 20000, "keys loaded before slipstream starts in cluster-leader, to kill during the bootstrap")
	fs.IntVar(&o.rate, "rate", 500, "writer operations per second")
	fs.IntVar(&o.reads, "reads", 50, "random reads per fold after each recovered cycle")
	fs.DurationVar(&o.wait, "wait", 90*time.Second, "longest wait for a recovery, a sync or a server before the scenario fails")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, data) instead of removing it")
	fs.BoolVar(&o.verbose, "v", false, "log each cycle on stderr")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: slipstream-crash [flags]")
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
	o.scenarios = splitList(scen)
	for _, s := range o.scenarios {
		if !slices.Contains(scenarioNames(), s) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (%s)", s, strings.Join(scenarioNames(), ", "))
		}
	}
	if len(o.scenarios) == 0 {
		return nil, errors.New("-scenarios: none given")
	}
	switch store {
	case "sqlite", "pebble":
		o.stores = []string{store}
	case "both":
		o.stores = []string{"sqlite", "pebble"}
	default:
		return nil, fmt.Errorf("-store: %q is not sqlite, pebble or both", store)
	}
	switch {
	case o.cycles < 1:
		return nil, errors.New("-cycles must be at least 1")
	case o.keys < 10 || o.keys > 10000:
		return nil, errors.New("-keys must be from 10 to 10000")
	case o.bootstrapKeys < 0:
		return nil, errors.New("-bootstrap-keys must not be negative")
	case o.rate < 1 || o.rate > 20000:
		return nil, errors.New("-rate must be from 1 to 20000")
	case o.reads < 1:
		return nil, errors.New("-reads must be at least 1")
	case o.wait <= 0:
		return nil, errors.New("-wait must be positive")
	}
	o.seed = uint64(seed)
	if seed == 0 {
		o.seed = rand.Uint64() >> 1
	}
	abs, err := filepath.Abs(o.binDir)
	if err != nil {
		return nil, err
	}
	o.binDir = abs
	for _, name := range append([]string{"slipstream"}, prefixed("slipstream-store-", o.stores)...) {
		if _, err := os.Stat(filepath.Join(o.binDir, name)); err != nil {
			return nil, fmt.Errorf("-bin %s: %w (run make build)", o.binDir, err)
		}
	}
	if o.natsServer == "" {
		o.natsServer = filepath.Join(".cache", "tools", "nats-server")
		if _, err := os.Stat(o.natsServer); err != nil {
			if o.natsServer, err = exec.LookPath("nats-server"); err != nil {
				return nil, errors.New("nats-server not found in .cache/tools or on $PATH (run make tools, or give -nats-server)")
			}
		}
	}
	if o.natsServer, err = filepath.Abs(o.natsServer); err != nil {
		return nil, err
	}
	return o, nil
}

func prefixed(p string, names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, p+n)
	}
	return out
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

// run runs every selected scenario and prints the table; it returns the
// exit code.
func run(ctx context.Context, o *options) (code int) {
	began := time.Now()
	reg := newRegistry()
	if err := becomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "slipstream-crash: warning: cannot become a child subreaper:", err)
	}
	root, err := os.MkdirTemp("", "slipstream-crash-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipstream-crash:", err)
		return 1
	}
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stderr, "slipstream-crash: panic: %v\n", p)
			code = 1
		}
		reg.killAll()
		if o.keep {
			fmt.Fprintln(os.Stderr, "slipstream-crash: work directory kept:", root)
		} else if err := os.RemoveAll(root); err != nil {
			fmt.Fprintln(os.Stderr, "slipstream-crash:", err)
		}
	}()
	fmt.Printf("slipstream-crash: seed %d, %d cycles per scenario, stores %s, writer %d ops/s over %d keys, work dir %s\n",
		o.seed, o.cycles, strings.Join(o.stores, "+"), o.rate, o.keys, root)
	var rows []*result
	for _, name := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		idx := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
		sc := scenarios[idx]
		e, err := newEnv(o, reg, root, sc.name, idx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "slipstream-crash:", err)
			return 1
		}
		e.run(ctx, sc.run)
		for _, f := range e.folds {
			r := e.res[f.name]
			rows = append(rows, r)
			fmt.Println(r.line(time.Since(e.start)))
			for _, n := range r.notes {
				fmt.Println("    " + n)
			}
			if r.err != nil {
				fmt.Println("    ERROR: " + strings.ReplaceAll(r.err.Error(), "\n", "\n    "))
			}
		}
	}
	wall := time.Since(began)
	fmt.Println()
	printTable(os.Stdout, rows)
	fmt.Println()
	fmt.Println("recovery measures:")
	for _, s := range scenarios {
		if slices.Contains(o.scenarios, s.name) {
			fmt.Printf("  %-15s %s\n", s.name, s.recovery)
		}
	}
	fmt.Printf("wall time: %v\n", wall.Round(time.Second))
	failed := ctx.Err() != nil
	for _, r := range rows {
		failed = failed || r.failed()
	}
	if ctx.Err() != nil {
		fmt.Println("interrupted")
	}
	if failed {
		fmt.Println("FAIL")
		return 1
	}
	fmt.Println("PASS")
	return 0
}
