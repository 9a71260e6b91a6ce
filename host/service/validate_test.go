package service_test

import (
	"context"
	"errors"
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
)

// validateParts are the files the configs of the validate tests name: the
// real SQLite plugin and example transforms, and things that are neither.
type validateParts struct {
	natsURL   string
	replacer  *strings.Replacer
	pluginDir string
}

func newValidateParts(t *testing.T) *validateParts {
	t.Helper()
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	dir := t.TempDir()
	script := filepath.Join(dir, "slipstream-store-script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'this is not a plugin'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notWasm := filepath.Join(dir, "garbage.wasm")
	if err := os.WriteFile(notWasm, []byte("this is not a WASM module\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pairA, pairB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{pairA, pairB} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.SelfSigned(t, d)
	}
	plugin := testenv.SQLitePlugin(t)
	return &validateParts{
		natsURL:   srv.ClientURL(),
		pluginDir: filepath.Dir(plugin),
		replacer: strings.NewReplacer(
			"NATS_URL", srv.ClientURL(),
			"PLUGIN_DIR", filepath.Dir(plugin),
			"KEYFILTER", testenv.GoWasm(t, "transforms/examples/keyfilter"),
			"RENAME", testenv.GoWasm(t, "transforms/examples/rename"),
			"REDACT", testenv.GoWasm(t, "transforms/examples/redact"),
			"NOTWASM", notWasm,
			"SCRIPT", script,
			"CERT", filepath.Join(pairA, "cert.pem"),
			"OTHERKEY", filepath.Join(pairB, "key.pem"),
			"KEY", filepath.Join(pairA, "key.pem"),
		),
	}
}

// load writes the config body (after the data_dir, plugin_dir and [nats]
// lines) to a new directory and loads it.
func (p *validateParts) load(t *testing.T, body string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	toml := p.replacer.Replace("data_dir = \"data\"\nplugin_dir = \"PLUGIN_DIR\"\n[nats]\nurl = \"NATS_URL\"\n" + body)
	path := filepath.Join(dir, "slipstream.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load refused the config, so this row proves nothing about Validate: %v\n%s", err, toml)
	}
	return cfg
}

func testLogger() *slog.Logger {
	if os.Getenv("SLIPSTREAM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// runRefuses starts cfg and reports how run refuses it: Start's error, or
// the reason of its first fold once that fold stalls (within stallWithin).
// It fails the test if the service starts and its fold does not stall.
func runRefuses(t *testing.T, cfg *config.Config, stallWithin time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := service.Start(ctx, cfg, testLogger(), service.Options{CheckEvery: 50 * time.Millisecond})
	if err != nil {
		return "start: " + err.Error()
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	f := svc.Folds()[0]
	deadline := time.Now().Add(stallWithin)
	for time.Now().Before(deadline) {
		st := f.Status(ctx)
		if st.State == fold.StateStalled {
			return "stalled: " + st.Reason
		}
		if st.Ready {
			t.Fatalf("run accepted the config: fold %s is ready (%s)", st.Name, st.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("run neither refused the config at start nor stalled its fold within %v (state %s)", stallWithin, f.Status(ctx).State)
	return ""
}

const httpOff = "[http]\nlisten = \"off\"\n"

const sqliteFold = `
[[fold]]
name = "f"
bucket = "cfg"
store = "sqlite"
`

// TestValidateRefusesWhatRunRefuses is the table of issue 16: each config
// passes config.Load, run refuses it at start or stalls its fold for good,
// and Validate refuses it naming the fold and the cause, without creating
// data_dir.
func TestValidateRefusesWhatRunRefuses(t *testing.T) {
	p := newValidateParts(t)
	rows := []struct {
		name string
		body string
		// where is the start of Validate's error (what it names).
		where string
		// cause is in Validate's error and in run's refusal.
		cause string
		// stalls says run starts and stalls the fold instead of refusing.
		stalls bool
	}{
		{
			name:  "plugin name not found",
			body:  httpOff + strings.Replace(sqliteFold, `"sqlite"`, `"nope"`, 1),
			where: `fold f: store plugin "nope" not found`,
			cause: `looked for slipstream-store-nope`,
		},
		{
			name:  "plugin path missing",
			body:  httpOff + strings.Replace(sqliteFold, `"sqlite"`, `"/nonexistent/slipstream-store-x"`, 1),
			where: `fold f: store plugin /nonexistent/slipstream-store-x`,
			cause: `no such file or directory`,
		},
		{
			name:   "plugin path that exits at once",
			body:   httpOff + strings.Replace(sqliteFold, `"sqlite"`, `"/bin/true"`, 1),
			where:  `fold f: store plugin /bin/true: handshake failed`,
			cause:  `store plugin /bin/true: handshake failed`,
			stalls: true,
		},
		{
			name:   "plugin path that prints something else",
			body:   httpOff + strings.Replace(sqliteFold, `"sqlite"`, `"SCRIPT"`, 1),
			where:  `fold f: store plugin `,
			cause:  `handshake failed`,
			stalls: true,
		},
		{
			name:   "store_config unknown key",
			body:   httpOff + sqliteFold + "store_config = { foo = 1 }\n",
			where:  `fold f: store plugin "sqlite" (`,
			cause:  `sqlite store_config: json: unknown field "foo"`,
			stalls: true,
		},
		{
			name:   "store_config bad value",
			body:   httpOff + sqliteFold + "store_config = { synchronous = \"sometimes\" }\n",
			where:  `fold f: store plugin "sqlite" (`,
			cause:  `synchronous must be normal, full or off, not "sometimes"`,
			stalls: true,
		},
		{
			name:   "store_config bad type",
			body:   httpOff + sqliteFold + "store_config = { cache_size = \"big\" }\n",
			where:  `fold f: store plugin "sqlite" (`,
			cause:  `cannot unmarshal string into Go struct field Config.cache_size`,
			stalls: true,
		},
		{
			name:  "keyfilter: a pattern with an empty token",
			body:  httpOff + sqliteFold + "[[fold.transform]]\nname = \"keyfilter\"\nmodule = \"KEYFILTER\"\nconfig = { allow = [\"route..x\"] }\n",
			where: `fold f: transform[keyfilter]: `,
			cause: `init: pattern "route..x" has an empty token`,
		},
		{
			name:  "keyfilter: a misspelt key",
			body:  httpOff + sqliteFold + "[[fold.transform]]\nname = \"keyfilter\"\nmodule = \"KEYFILTER\"\nconfig = { alow = [\"route.*\"] }\n",
			where: `fold f: transform[keyfilter]: `,
			cause: `json: unknown field "alow"`,
		},
		{
			name: "rename: from missing, in the second module of a chain",
			body: httpOff + sqliteFold +
				"[[fold.transform]]\nname = \"keyfilter\"\nmodule = \"KEYFILTER\"\nconfig = { allow = [\"route.*\"] }\n" +
				"[[fold.transform]]\nname = \"rename\"\nmodule = \"RENAME\"\nconfig = { to = \"r.\" }\n",
			where: `fold f: transform[rename]: `,
			cause: `config: from must be a non-empty prefix`,
		},
		{
			name:  "redact: a bad non_json",
			body:  httpOff + sqliteFold + "[[fold.transform]]\nname = \"redact\"\nmodule = \"REDACT\"\nconfig = { non_json = \"maybe\" }\n",
			where: `fold f: transform[redact]: `,
			cause: `non_json must be "keep", "drop" or "error", not "maybe"`,
		},
		{
			name:  "a module that is not WASM",
			body:  httpOff + sqliteFold + "[[fold.transform]]\nmodule = \"NOTWASM\"\n",
			where: `fold f: transform[garbage]: `,
			cause: `garbage.wasm: invalid magic number`,
		},
		{
			name:  "tls_cert and tls_key of different pairs",
			body:  "[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"CERT\"\ntls_key = \"OTHERKEY\"\n" + sqliteFold,
			where: `http api: tls_cert and tls_key: `,
			cause: `private key does not match public key`,
		},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			cfg := p.load(t, r.body)
			err := service.Validate(context.Background(), cfg, testLogger())
			if err == nil {
				t.Fatal("Validate accepted the config")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, r.where) || !strings.Contains(msg, r.cause) {
				t.Errorf("Validate: %v\nwant it to start with %q and hold %q", err, r.where, r.cause)
			}
			if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Validate touched data_dir %s: %v", cfg.DataDir, err)
			}
			got := runRefuses(t, cfg, 15*time.Second)
			t.Logf("validate: %v\nrun: %s", err, got)
			want := "start: "
			if r.stalls {
				want = "stalled: "
			}
			if !strings.HasPrefix(got, want) || !strings.Contains(got, r.cause) {
				t.Errorf("run: %s\nwant %q... holding %q", got, want, r.cause)
			}
		})
	}
}

// TestValidateReportsEveryProblem: the problems of several folds come
// together, each naming its fold.
func TestValidateReportsEveryProblem(t *testing.T) {
	p := newValidateParts(t)
	cfg := p.load(t, `
[http]
listen = "127.0.0.1:0"
tls_cert = "CERT"
tls_key = "OTHERKEY"
[[fold]]
name = "missing"
bucket = "cfg"
store = "nope"
[[fold]]
name = "badstore"
bucket = "cfg"
store = "sqlite"
store_config = { foo = 1 }
[[fold]]
name = "badchain"
bucket = "cfg"
store = "sqlite"
[[fold.transform]]
name = "keyfilter"
module = "KEYFILTER"
config = { deny = ["a>"] }
[[fold]]
name = "fine"
bucket = "cfg"
store = "sqlite"
`)
	err := service.Validate(context.Background(), cfg, testLogger())
	if err == nil {
		t.Fatal("Validate accepted the config")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, want := range []string{
		`http api: tls_cert and tls_key: `,
		`fold missing: store plugin "nope" not found`,
		`fold badstore: store plugin "sqlite" (`,
		`fold badchain: transform[keyfilter]: `,
	} {
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines start with %q, want 1:\n%v", n, want, err)
		}
	}
	if strings.Contains(err.Error(), "fold fine") {
		t.Errorf("Validate blamed the fold that is fine:\n%v", err)
	}
}

// TestValidateAcceptsAGoodConfig: a config using every part the table
// breaks, each used right, passes Validate, which leaves neither data_dir
// nor its scratch directory behind; and run folds it.
func TestValidateAcceptsAGoodConfig(t *testing.T) {
	p := newValidateParts(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cfg := p.load(t, `
[http]
listen = "127.0.0.1:0"
tls_cert = "CERT"
tls_key = "KEY"
[[fold]]
name = "f"
bucket = "cfg"
store = "sqlite"
store_config = { synchronous = "full", cache_size = 1048576 }
[[fold.transform]]
name = "keyfilter"
module = "KEYFILTER"
config = { allow = ["route.*"], deny = ["*.secret"] }
[[fold.transform]]
name = "redact"
module = "REDACT"
config = { fields = ["password"], non_json = "drop" }
[[fold.transform]]
name = "rename"
module = "RENAME"
config = { from = "route.", to = "r." }
[[fold]]
name = "g"
bucket = "cfg"
store = "PLUGIN_DIR/slipstream-store-sqlite"
`)
	if err := service.Validate(context.Background(), cfg, testLogger()); err != nil {
		t.Fatalf("Validate refused a good config: %v", err)
	}
	if err := service.ValidateOffline(cfg); err != nil {
		t.Fatalf("ValidateOffline refused a good config: %v", err)
	}
	if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Validate touched data_dir %s: %v", cfg.DataDir, err)
	}
	left, err := filepath.Glob(filepath.Join(tmp, "slipstream-validate-*"))
	if err != nil || len(left) > 0 {
		t.Errorf("Validate left its scratch directory behind: %v %v", left, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := service.Start(ctx, cfg, testLogger(), service.Options{CheckEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("run refused the config Validate accepted: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	for _, f := range svc.Folds() {
		testenv.Eventually(t, 60*time.Second, "fold "+f.Name()+" ready", func() bool {
			st := f.Status(ctx)
			if st.State == fold.StateStalled {
				t.Fatalf("fold %s stalled: %s", f.Name(), st.Reason)
			}
			return st.Ready
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

// TestValidateOfflineStartsNothing: the offline check refuses the bad key
// pair and passes configs whose faults only a started plugin or module
// shows.
func TestValidateOfflineStartsNothing(t *testing.T) {
	p := newValidateParts(t)
	bad := p.load(t, "[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"CERT\"\ntls_key = \"OTHERKEY\"\n"+sqliteFold)
	if err := service.ValidateOffline(bad); err == nil || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Errorf("ValidateOffline with a mismatched key pair: %v", err)
	}
	for _, body := range []string{
		httpOff + strings.Replace(sqliteFold, `"sqlite"`, `"/bin/true"`, 1),
		httpOff + sqliteFold + "store_config = { foo = 1 }\n",
		httpOff + sqliteFold + "[[fold.transform]]\nmodule = \"NOTWASM\"\n",
	} {
		if err := service.ValidateOffline(p.load(t, body)); err != nil {
			t.Errorf("ValidateOffline: %v\nfor\n%s", err, body)
		}
	}
}
