package conformance_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/conformance"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	pebblestore "github.com/slipstreamkv/slipstream/plugins/pebble/store"
	sqlitestore "github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

// The plugins this repository ships, by binary name suffix and package.
var plugins = []struct{ name, pkg string }{
	{"pebble", "github.com/slipstreamkv/slipstream/plugins/pebble"},
	{"sqlite", "github.com/slipstreamkv/slipstream/plugins/sqlite"},
	{"example", "github.com/slipstreamkv/slipstream/sdk/example"},
}

// binDir holds the plugin binaries TestMain's run builds, each on first use.
var (
	binDir string
	builds sync.Map // name → func() (string, error)
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slipstream-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// pluginBinary builds the named plugin with go build (once per test run)
// and returns its path.
func pluginBinary(tb testing.TB, name, pkg string) string {
	tb.Helper()
	build, _ := builds.LoadOrStore(name, sync.OnceValues(func() (string, error) {
		path := filepath.Join(binDir, "slipstream-store-"+name)
		out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		return path, nil
	}))
	path, err := build.(func() (string, error))()
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestPlugins(t *testing.T) {
	for _, p := range plugins {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			conformance.RunPlugin(t, pluginBinary(t, p.name, p.pkg))
		})
	}
}

// BenchmarkApply measures Apply as the host calls it: batches of 1000 new
// entries with 40-byte keys and 200-byte values, each committed with its
// cursor (store_config {}: the default durability), applied plainly in
// random key order ("insert") and in key order ("insert-ordered"), and in
// a bulk load in random order ("load", whose EndLoad is reported apart as
// endload-ms). Each shipped backend runs three times on
// the same workload: through its plugin process one Apply at a time
// ("plugin"), through its plugin process on the apply pipe with two
// batches ahead, as the host catches up ("plugin-pipe"), and linked into
// this process ("in-process"), so the rates compare directly. The
// example store is left out: it rewrites the whole fold per batch by design.
func BenchmarkApply(b *testing.B) {
	inProcess := map[string]func() sdk.Store{
		"pebble": func() sdk.Store { return pebblestore.New() },
		"sqlite": func() sdk.Store { return sqlitestore.New() },
	}
	for _, p := range plugins {
		if p.name == "example" {
			continue
		}
		for _, where := range []string{"plugin", "plugin-pipe", "in-process"} {
			for _, mode := range []string{"insert", "insert-ordered", "load"} {
				b.Run(p.name+"/"+where+"/"+mode, func(b *testing.B) {
					ctx := context.Background()
					if where == "in-process" {
						benchApply(b, inProcess[p.name](), mode, nil)
						return
					}
					pl, err := pluginhost.Launch(ctx, pluginhost.Config{Path: pluginBinary(b, p.name, p.pkg)})
					if err != nil {
						b.Fatal(err)
					}
					defer pl.Kill()
					if where == "plugin" {
						benchApply(b, pl, mode, nil)
						return
					}
					benchApply(b, pl, mode, pl)
				})
			}
		}
	}
}

// benchApply applies b.N batches to s, through pl's pipe if pl is not nil.
func benchApply(b *testing.B, s sdk.Store, mode string, pl *pluginhost.Plugin) {
	load := mode == "load"
	ctx := context.Background()
	if _, err := s.Open(ctx, b.TempDir(), []byte("{}")); err != nil {
		b.Fatal(err)
	}
	loader, _ := s.(sdk.Loader)
	if p, ok := s.(*pluginhost.Plugin); ok {
		loader, _ = p.Loader()
	}
	if load {
		if err := loader.BeginLoad(ctx); err != nil {
			b.Fatal(err)
		}
	}
	const batchSize = 1000
	value := bytes.Repeat([]byte("v"), 200)
	var pipe pluginhost.BatchPipe
	if pl != nil {
		var err error
		if pipe, err = pl.Pipe(ctx); err != nil {
			b.Fatal(err)
		}
		defer pipe.Close()
	}
	// The keys are made before the clock starts: not Apply's work, and a
	// pipe would go on applying while the clock stopped.
	batches := make([]*sdk.Batch, b.N)
	for i := range batches {
		batch := &sdk.Batch{Mutations: make([]sdk.Mutation, batchSize), Cursor: uint64((i + 1) * batchSize)}
		for j := range batch.Mutations {
			n := i*batchSize + j
			k := uint32(n * 2654435761) // distinct, in random order
			key := fmt.Appendf(nil, "route.t%04d.svc-%05d.endpoint.%010d", k%7919, k%100, k)
			if mode == "insert-ordered" {
				key = fmt.Appendf(nil, "route.endpoint.%010d.t%04d.svc-%05d", n, n%7919, n%100)
			}
			batch.Mutations[j] = sdk.Mutation{Op: sdk.OpPut, Key: key, Value: value, Revision: uint64(n + 1)}
		}
		batches[i] = batch
	}
	const ahead = 2 // batches sent and not yet committed, at most
	sent := 0
	b.ResetTimer()
	for _, batch := range batches {
		if pipe == nil {
			if err := s.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if err := pipe.Send(batch); err != nil {
			b.Fatal(err)
		}
		if sent++; sent > ahead {
			if _, err := pipe.Wait(); err != nil {
				b.Fatal(err)
			}
			sent--
		}
	}
	for ; sent > 0; sent-- {
		if _, err := pipe.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "entries/s")
	if load {
		start := time.Now()
		if err := loader.EndLoad(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "endload-ms")
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
