package transforms_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/transforms"
)

// wasmDir holds every module the tests use, built from source by TestMain:
// the examples, and the test guests of testdata/.
var wasmDir string

// goGuests are built with the Go toolchain as mk/transforms.mk builds them,
// named after their directory.
var goGuests = []string{"examples/keyfilter", "examples/rename", "examples/redact", "testdata/goguest"}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "transforms-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	wasmDir = dir
	if err := buildModules(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// buildModules builds every Go guest and WAT module into dir, in parallel.
func buildModules(dir string) error {
	wats, err := filepath.Glob("examples/wat/*.wat")
	if err != nil {
		return err
	}
	more, err := filepath.Glob("testdata/*.wat")
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		return fmt.Errorf("%w: install wabt (make wabt)", err)
	}
	var cmds []*exec.Cmd
	for _, pkg := range goGuests {
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w",
			"-o", filepath.Join(dir, filepath.Base(pkg)+".wasm"), "./"+pkg)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		cmds = append(cmds, cmd)
	}
	// echo_record is the echo guest without slipstream_batch: the same
	// answers, one record at a time.
	echo, err := os.ReadFile("testdata/echo.wat")
	if err != nil {
		return err
	}
	noBatch := strings.Replace(string(echo), `(export "slipstream_batch")`, "", 1)
	if noBatch == string(echo) {
		return fmt.Errorf("testdata/echo.wat no longer exports slipstream_batch as echo_record expects")
	}
	echoRecord := filepath.Join(dir, "echo_record.wat")
	if err := os.WriteFile(echoRecord, []byte(noBatch), 0o644); err != nil {
		return err
	}
	for _, wat := range append(append(wats, more...), echoRecord) {
		name := strings.TrimSuffix(filepath.Base(wat), ".wat")
		cmds = append(cmds, exec.Command("wat2wasm", "-o", filepath.Join(dir, name+".wasm"), wat))
	}
	errs := make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sharedCache is the compilation cache of most tests, so that each Go
// guest is compiled once.
func sharedCache() string { return filepath.Join(wasmDir, "cache") }

// wasm returns the path of a module built by TestMain.
func wasm(name string) string { return filepath.Join(wasmDir, name+".wasm") }

// newRuntime returns a runtime closed with the test, using the shared
// compilation cache unless opts names another.
func newRuntime(t testing.TB, opts transforms.Options) *transforms.Runtime {
	t.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = sharedCache()
	}
	rt, err := transforms.NewRuntime(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return rt
}

// newChain returns a chain of mods closed with the test.
func newChain(t testing.TB, rt *transforms.Runtime, mods ...transforms.Module) *transforms.Chain {
	t.Helper()
	c, err := rt.NewChain(context.Background(), mods)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return c
}

// process runs recs through c and fails the test if that takes longer
// than limit, so that a guest the deadline does not stop fails instead of
// hanging.
func process(t *testing.T, c *transforms.Chain, limit time.Duration, recs ...sdk.Mutation) []transforms.Outcome {
	t.Helper()
	type result struct {
		out []transforms.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.Process(context.Background(), recs)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Process: %v", r.err)
		}
		if len(r.out) != len(recs) {
			t.Fatalf("Process returned %d outcomes for %d records", len(r.out), len(recs))
		}
		return r.out
	case <-time.After(limit):
		t.Fatalf("Process did not return within %v", limit)
		return nil
	}
}

// rev is the revision of test records; the chain must pass it through.
const rev = 42

func put(key, value string) sdk.Mutation {
	return sdk.Mutation{Op: sdk.OpPut, Key: []byte(key), Value: []byte(value), Revision: rev}
}

func del(key string) sdk.Mutation {
	return sdk.Mutation{Op: sdk.OpDelete, Key: []byte(key), Revision: rev}
}

func purge(key string) sdk.Mutation {
	return sdk.Mutation{Op: sdk.OpPurge, Key: []byte(key), Revision: rev}
}
