package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/service"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// running is a service started from a TOML config against a test server.
type running struct {
	t      *testing.T
	svc    *service.Service
	cancel context.CancelFunc
	done   chan error
}

// start writes toml (with NATS_URL and PLUGIN_DIR filled in) to dir and runs it.
func start(t *testing.T, dir, natsURL, toml string) *running {
	t.Helper()
	return startWith(t, dir, natsURL, toml, service.Options{})
}

// startWith is start with opts (CheckEvery defaults to 50ms).
func startWith(t *testing.T, dir, natsURL, toml string, opts service.Options) *running {
	t.Helper()
	plugin := testenv.SQLitePlugin(t)
	toml = strings.NewReplacer("NATS_URL", natsURL, "PLUGIN_DIR", filepath.Dir(plugin)).Replace(toml)
	path := filepath.Join(dir, "slipstream.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("SLIPSTREAM_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	if opts.CheckEvery == 0 {
		opts.CheckEvery = 50 * time.Millisecond
	}
	svc, err := service.Start(ctx, cfg, logger, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{t: t, svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("service: %v", err)
	}
	r.cancel = nil
}

func (r *running) fold() *fold.Fold { return r.svc.Folds()[0] }

func (r *running) contents() map[string]string {
	r.t.Helper()
	out := map[string]string{}
	if err := r.fold().Scan(context.Background(), sdk.Range{}, func(e sdk.Entry) error {
		out[string(e.Key)] = string(e.Value)
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *running) waitReady(cursor uint64) fold.Status {
	r.t.Helper()
	var st fold.Status
	testenv.Eventually(r.t, 60*time.Second, fmt.Sprintf("ready at cursor %d (last %+v)", cursor, st), func() bool {
		st = r.fold().Status(context.Background())
		return st.Ready && st.Cursor >= cursor
	})
	return st
}

func equal(t *testing.T, got, want map[string]string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fold:\n  %v\nwant:\n  %v", got, want)
	}
}

// foldTOML is a service with one fold "f" of bucket "cfg" in SQLite, the
// test's server and plugin filled in by start.
const foldTOML = `
data_dir = "data"
plugin_dir = "PLUGIN_DIR"
[nats]
url = "NATS_URL"
[http]
listen = "off"
[[fold]]
name = "f"
bucket = "cfg"
store = "sqlite"
`

const chainTOML = foldTOML + `[[fold.transform]]
module = "KEYFILTER"
config = { deny = ["*.secret"] }
[[fold.transform]]
module = "RENAME"
config = { from = "route.", to = "r." }
`

func chain(t *testing.T, deny string) string {
	return strings.NewReplacer(
		"KEYFILTER", testenv.GoWasm(t, "transforms/examples/keyfilter"),
		"RENAME", testenv.GoWasm(t, "transforms/examples/rename"),
		`"*.secret"`, deny,
	).Replace(chainTOML)
}

// TestTransformChainOnLiveFold: the example modules filter and rename a
// live fold as configured, deletes included.
func TestTransformChainOnLiveFold(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx := context.Background()
	for _, k := range []string{"route.a", "route.b", "route.secret", "users.x"} {
		if _, err := kv.Put(ctx, k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	r := start(t, t.TempDir(), srv.ClientURL(), chain(t, `"*.secret"`))
	r.waitReady(4)
	equal(t, r.contents(), map[string]string{"r.a": "v-route.a", "r.b": "v-route.b", "users.x": "v-users.x"})
	if err := kv.Delete(ctx, "route.a"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "route.c", []byte("new")); err != nil {
		t.Fatal(err)
	}
	r.waitReady(6)
	equal(t, r.contents(), map[string]string{"r.b": "v-route.b", "r.c": "new", "users.x": "v-users.x"})
}

// TestTransformConfigChangeRebuilds: a changed module config rebuilds the
// fold, and the result equals a fresh fold with the new config.
func TestTransformConfigChangeRebuilds(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx := context.Background()
	for _, k := range []string{"route.a", "route.secret", "users.x", "users.hidden"} {
		if _, err := kv.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	r := start(t, dir, srv.ClientURL(), chain(t, `"*.secret"`))
	r.waitReady(4)
	r.stop()

	r2 := start(t, dir, srv.ClientURL(), chain(t, `"*.hidden"`))
	st := r2.waitReady(4)
	if st.Generation != 2 {
		t.Errorf("generation %d after a transform config change; want a rebuild into generation 2", st.Generation)
	}
	rebuilt := r2.contents()
	r2.stop()
	fresh := start(t, t.TempDir(), srv.ClientURL(), chain(t, `"*.hidden"`))
	fresh.waitReady(4)
	equal(t, rebuilt, fresh.contents())
	if _, ok := rebuilt["route.secret"]; ok {
		t.Error("rebuilt fold has route.secret unrenamed")
	}
}

const failTOML = foldTOML + `[[fold.transform]]
module = "MODULE"
name = "bad"
on_error = "ONERROR"
`

// TestFailingModules: a module that traps, loops, eats memory or answers
// malformed stalls the fold with the module, the key and the reason, and
// folds nothing wrong; under on_error = "skip" the update is skipped and the
// rest folded.
func TestFailingModules(t *testing.T) {
	for _, mod := range []struct{ wat, key, reason string }{
		{"trap.wat", "!boom", "unreachable"},
		{"loop.wat", "!boom", "deadline"},
		{"grow.wat", "!boom", "memory"},
		{"malformed.wat", "!boom", "malformed"},
	} {
		for _, onError := range []string{"stall", "skip"} {
			t.Run(mod.wat+"/"+onError, func(t *testing.T) {
				srv := testenv.NATS(t)
				nc, js := testenv.JetStream(t, srv.ClientURL())
				kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
				ctx := context.Background()
				if _, err := kv.Put(ctx, "good.a", []byte("1")); err != nil {
					t.Fatal(err)
				}
				// KV keys cannot start with '!'; a raw publish can.
				if err := nc.Publish("$KV.cfg."+mod.key, []byte("x")); err != nil {
					t.Fatal(err)
				}
				if _, err := kv.Put(ctx, "good.b", []byte("2")); err != nil {
					t.Fatal(err)
				}
				toml := strings.NewReplacer("MODULE", testenv.WatWasm(t, "transforms/testdata/"+mod.wat),
					"ONERROR", onError).Replace(failTOML)
				r := start(t, t.TempDir(), srv.ClientURL(), toml)
				if onError == "skip" {
					r.waitReady(3)
					equal(t, r.contents(), map[string]string{"good.a": "1", "good.b": "2"})
					return
				}
				var st fold.Status
				testenv.Eventually(t, 30*time.Second, "the fold to stall", func() bool {
					st = r.fold().Status(ctx)
					return st.State == fold.StateStalled
				})
				for _, want := range []string{"transform[bad]", mod.key} {
					if !strings.Contains(st.Reason, want) {
						t.Errorf("stall reason %q does not name %q", st.Reason, want)
					}
				}
				if !strings.Contains(strings.ToLower(st.Reason), mod.reason) {
					t.Errorf("stall reason %q does not say %q", st.Reason, mod.reason)
				}
				if st.Cursor > 1 || st.Ready {
					t.Errorf("a stalled fold moved past the failing update: %+v", st)
				}
			})
		}
	}
}
