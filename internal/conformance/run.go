package conformance

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCase is one check of the store contract. The table in cases.go is
// shared by Run (go test) and RunCLI.
type testCase struct {
	Name string
	// Mandatory cases run for every plugin; they are skipped only for an
	// InProcess target that cannot do what they need.
	Mandatory bool
	// Capability, on an optional case, is the sdk capability the store must
	// declare for the case to run.
	Capability string
	// Catches is the fault the case exists to catch.
	Catches string
	needs   need
	Run     func(h *harness)
}

// need is what a case asks of the target beyond the sdk.Store methods.
type need uint8

const (
	// needKill: kill an instance between calls (a crash after a commit).
	needKill need = 1 << iota
	// needProcess: SIGKILL a process while a call is in flight.
	needProcess
	// needPipe: send batches on an apply pipe.
	needPipe
)

// skip says why tc does not run against the target, or "".
func (tc testCase) skip(t *Target, info storeInfo) string {
	switch {
	case tc.Capability != "" && !info.Has(tc.Capability):
		return fmt.Sprintf("the store does not declare capability %q", tc.Capability)
	case tc.needs&needProcess != 0 && !t.process:
		return "needs a store process to kill in the middle of a call"
	case tc.needs&needKill != 0 && !t.canKill:
		return "needs a store instance that can be killed"
	case tc.needs&needPipe != 0 && !t.pipe:
		return "the store has no apply pipe (it is not a plugin process): the host sends it one batch at a time"
	}
	return ""
}

// Property runs a property under go test: check calls run once per
// example with the example's Reporter and drawer, and shrinks a failure.
// Package conformance (the public front end) passes one built on
// pgregory.net/rapid; this package does not link it, so a binary that only
// runs RunCLI (slipstream's) does not either.
type Property func(t *testing.T, run func(rep Reporter, d Drawer))

// Run runs every case against target, as subtests of t named after the
// cases (select some with -run); the model-based case is a property run
// by check.
func Run(t *testing.T, target Target, check Property) {
	t.Helper()
	info, err := probe(&target)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, tc := range cases() {
		t.Run(tc.Name, func(t *testing.T) {
			if why := tc.skip(&target, info); why != "" {
				t.Skip(why)
			}
			ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
			defer cancel()
			h := newHarness(ctx, t, &target, info, root, tc.Name)
			h.t, h.property = t, check
			defer h.finish()
			defer func() {
				if t.Failed() {
					if s := h.logs.String(); s != "" {
						t.Log(s)
					}
				}
			}()
			tc.Run(h)
		})
	}
}

// RunCLI runs every case against the store plugin binary at path and writes
// one line per case to w: PASS, FAIL with the reasons, or SKIP for an
// optional case the plugin does not declare. With verbose, it also writes
// what each case catches and what it logged. The last line is
// "N passed, N failed". The model-based case runs with fixed seeds.
func RunCLI(w io.Writer, path string, verbose bool) (passed, failed int) {
	return runText(w, Plugin(path), verbose)
}

// runText is RunCLI for any target.
func runText(w io.Writer, target Target, verbose bool) (passed, failed int) {
	info, err := probe(&target)
	if err != nil {
		fmt.Fprintf(w, "FAIL  start: %s\n0 passed, 1 failed\n", indent(err.Error()))
		return 0, 1
	}
	root, cleanup, err := tempRoot()
	if err != nil {
		fmt.Fprintf(w, "FAIL  setup: %v\n0 passed, 1 failed\n", err)
		return 0, 1
	}
	defer cleanup()
	fmt.Fprintf(w, "conformance of %s: %s\n", target.name, describe(info))
	for _, tc := range cases() {
		res := runCase(&target, info, tc, root)
		switch {
		case res.skipped != "":
			fmt.Fprintf(w, "SKIP  %s: %s\n", tc.Name, res.skipped)
			continue
		case len(res.failures) > 0:
			failed++
			fmt.Fprintf(w, "FAIL  %s (%s)\n", tc.Name, res.elapsed.Round(time.Millisecond))
			for _, f := range res.failures {
				fmt.Fprintf(w, "      %s\n", indent(f))
			}
		default:
			passed++
			fmt.Fprintf(w, "PASS  %s (%s)\n", tc.Name, res.elapsed.Round(time.Millisecond))
		}
		if verbose {
			fmt.Fprintf(w, "      catches: %s\n", tc.Catches)
			for _, l := range res.logs {
				fmt.Fprintf(w, "      log: %s\n", indent(l))
			}
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", passed, failed)
	return passed, failed
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n      ") }

func describe(info storeInfo) string {
	name := info.Name
	if name == "" {
		name = "unnamed store"
	}
	if info.Version != "" {
		name += " " + info.Version
	}
	if len(info.caps) == 0 {
		return name + ", no optional capabilities"
	}
	return name + ", capabilities: " + strings.Join(info.caps, ", ")
}

// probe starts one instance to learn what the store declares.
func probe(t *Target) (storeInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logs := &tailLog{}
	in, err := t.start(ctx, logs)
	if err != nil {
		if s := logs.String(); s != "" {
			err = fmt.Errorf("%w\n%s", err, s)
		}
		return storeInfo{}, fmt.Errorf("start %s: %w", t.name, err)
	}
	defer in.release()
	if pp, ok := in.(piper); ok {
		p, err := pp.Pipe(ctx)
		if err != nil {
			return storeInfo{}, fmt.Errorf("%s: apply pipe: %w", t.name, err)
		}
		t.pipe = true
		p.Close()
	}
	return in.info(), nil
}

func newHarness(ctx context.Context, rep Reporter, t *Target, info storeInfo, root, name string) *harness {
	f := fnv.New64a()
	f.Write([]byte(name))
	return &harness{
		rep: rep, ctx: ctx, target: t, info: info, root: root, logs: &tailLog{},
		rnd: rand.New(rand.NewPCG(f.Sum64(), 1)), tracker: &tracker{},
	}
}

// result is the outcome of one case outside go test.
type result struct {
	skipped  string
	failures []string
	logs     []string
	elapsed  time.Duration
}

// runCase runs tc in its own goroutine, so that Fatalf can end it, and gives
// up on it if it outlives its deadline.
func runCase(t *Target, info storeInfo, tc testCase, root string) result {
	if why := tc.skip(t, info); why != "" {
		return result{skipped: why}
	}
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	rec := &recorder{}
	h := newHarness(ctx, rec, t, info, root, tc.Name)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer h.finish()
		defer func() {
			if p := recover(); p != nil {
				rec.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		tc.Run(h)
	}()
	select {
	case <-done:
	case <-time.After(caseTimeout + 30*time.Second):
		rec.Errorf("the case did not end within %v; killing its store instances", caseTimeout)
		h.abort()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			rec.Errorf("the case is still stuck; abandoning it")
		}
	}
	res := result{elapsed: time.Since(start)}
	res.failures, res.logs = rec.snapshot()
	if len(res.failures) > 0 {
		if s := h.logs.String(); s != "" {
			res.failures = append(res.failures, s)
		}
	}
	return res
}

// recorder is the Reporter outside go test.
type recorder struct {
	mu       sync.Mutex
	failures []string
	logs     []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *recorder) snapshot() (failures, logs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.failures...), append([]string(nil), r.logs...)
}
