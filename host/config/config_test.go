package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const exampleFile = "../../config.example.toml"

// exampleCopy copies the example config into a temp dir beside a stand-in
// for the transform module it names (make builds the real one).
func exampleCopy(t *testing.T) (dir, file string) {
	t.Helper()
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	file = filepath.Join(dir, "config.example.toml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

func TestLoadExample(t *testing.T) {
	root, file := exampleCopy(t)
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(),
		`fold[0].transform[0].module: file "bin/transforms/keyfilter.wasm" does not exist`) {
		t.Fatalf("Load without the module built: %v", err)
	}
	module := filepath.Join(root, "bin", "transforms", "keyfilter.wasm")
	if err := os.MkdirAll(filepath.Dir(module), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(module, []byte("\x00asm"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Path", cfg.Path, file},
		{"DataDir", cfg.DataDir, filepath.Join(root, "data")},
		{"NATS.URL", cfg.NATS.URL, ""},
		{"NATS.Listen", cfg.NATS.Listen, "127.0.0.1:4222"},
		{"NATS.StoreDir", cfg.NATS.StoreDir, filepath.Join(root, "data", "nats")},
		{"HTTP.Listen", cfg.HTTP.Listen, "127.0.0.1:7070"},
		{"Buckets", cfg.Buckets, map[string]Bucket{"config": {
			History: 1, MaxBytes: -1, MaxValueSize: -1, Replicas: 1, Storage: "file", Discard: "new",
		}}},
		{"len(Folds)", len(cfg.Folds), 1},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	f, ok := cfg.Fold("routes")
	if !ok {
		t.Fatal(`Fold("routes") not found`)
	}
	if f.Bucket != "config" || !reflect.DeepEqual(f.Scope, []string{"route.>"}) || f.Store != "sqlite" {
		t.Errorf("fold routes = %+v", *f)
	}
	want := []Transform{{Module: module, Name: "keyfilter",
		Config: map[string]any{"deny": []any{"*.secret", "*.*.secret"}}, OnError: "stall"}}
	if got := f.Transforms; !reflect.DeepEqual(got, want) {
		t.Errorf("Transforms = %#v, want %#v", got, want)
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "slipstream.toml")
	writeFile(t, dir, "t.wasm")
	cfg, err := Parse(file, []byte(`
[bucket.b]
[[fold]]
name = "f"
bucket = "b"
store = "./plugins/my-store"
[[fold.transform]]
module = "t.wasm"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:    file,
		DataDir: filepath.Join(dir, "data"),
		Log:     Log{Level: "info", Format: "auto"},
		NATS: NATS{
			Listen:         "127.0.0.1:4222",
			StoreDir:       filepath.Join(dir, "data", "nats"),
			Name:           "slipstream",
			ConnectTimeout: Duration(5 * time.Second),
			RequestTimeout: Duration(10 * time.Second),
		},
		HTTP: HTTP{Listen: "127.0.0.1:7070"},
		Buckets: map[string]Bucket{"b": {
			History: 1, MaxBytes: -1, MaxValueSize: -1, Replicas: 1, Storage: "file", Discard: "new",
		}},
		Folds: []Fold{{
			Name:   "f",
			Bucket: "b",
			Store:  filepath.Join(dir, "plugins", "my-store"),
			Batch:  Batch{MaxEntries: 1000, MaxBytes: 4 << 20, Window: Duration(10 * time.Millisecond)},
			Transforms: []Transform{{
				Module: filepath.Join(dir, "t.wasm"), Name: "t", OnError: "stall",
			}},
			Export:       Export{Every: Duration(time.Hour), PruneGrace: Duration(time.Hour), Replicas: 1},
			ReadCache:    64 << 20,
			ChangeBuffer: 16 << 20,
			BulkLoad:     true,
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse =\n%#v\nwant\n%#v", cfg, want)
	}
}

// TestExplicitValues checks that values set in the file win over defaults,
// in every accepted spelling, and that relative paths are resolved.
func TestExplicitValues(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"creds/app.creds", "ca.pem", "cert.pem", "key.pem", "m.wasm"} {
		writeFile(t, dir, f)
	}
	if err := os.Mkdir(filepath.Join(dir, "plugins"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(filepath.Join(dir, "s.toml"), []byte(`
data_dir = "/var/lib/slipstream"
plugin_dir = "plugins"
log = { level = "debug", format = "json" }
[nats]
url = "nats://u:p@a:4222, tls://b:4443,c:4222,wss://d/path"
listen = "0.0.0.0:4222"
allow_remote = true
creds = "creds/app.creds"
tls_ca = "ca.pem"
tls_cert = "cert.pem"
tls_key = "key.pem"
name = "edge-1"
connect_timeout = "2s"
request_timeout = "1m"
[http]
listen = "off"
[bucket.b]
history = 64
max_bytes = "1GB"
max_age = "24h"
max_value_size = 1048576
replicas = 3
storage = "memory"
discard = "old"
description = "routes"
[[fold]]
name = "f"
bucket = "b"
scope = "route.*"
store = "pebble"
store_config = { cache = "1GiB", levels = [1, 2.5], nested = { on = true } }
batch = { max_entries = 1_000_000, max_bytes = 1024, window = "10s" }
tombstone_horizon = "168h"
reconcile_every = 0
bulk_load = false
bootstrap_from = "nats-object://snaps/routes.eu"
export = { to = "nats-object://snaps/routes.eu", every = "30s", prune_grace = "2h", replicas = 3 }
read_cache = 0
change_buffer = "1MiB"
[[fold.transform]]
module = "m.wasm"
name = "filter"
on_error = "skip"
config.deny = ["*.secret"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:      filepath.Join(dir, "s.toml"),
		DataDir:   "/var/lib/slipstream",
		PluginDir: filepath.Join(dir, "plugins"),
		Log:       Log{Level: "debug", Format: "json"},
		NATS: NATS{
			URL:            "nats://u:p@a:4222, tls://b:4443,c:4222,wss://d/path",
			Listen:         "0.0.0.0:4222",
			AllowRemote:    true,
			StoreDir:       "/var/lib/slipstream/nats",
			Creds:          filepath.Join(dir, "creds/app.creds"),
			TLSCA:          filepath.Join(dir, "ca.pem"),
			TLSCert:        filepath.Join(dir, "cert.pem"),
			TLSKey:         filepath.Join(dir, "key.pem"),
			Name:           "edge-1",
			ConnectTimeout: Duration(2 * time.Second),
			RequestTimeout: Duration(time.Minute),
		},
		HTTP: HTTP{Listen: "off"},
		Buckets: map[string]Bucket{"b": {
			History: 64, MaxBytes: 1e9, MaxAge: Duration(24 * time.Hour), MaxValueSize: 1 << 20,
			Replicas: 3, Storage: "memory", Discard: "old", Description: "routes",
		}},
		Folds: []Fold{{
			Name:        "f",
			Bucket:      "b",
			Scope:       []string{"route.*"},
			Store:       "pebble",
			StoreConfig: map[string]any{"cache": "1GiB", "levels": []any{int64(1), 2.5}, "nested": map[string]any{"on": true}},
			Batch:       Batch{MaxEntries: 1_000_000, MaxBytes: 1024, Window: Duration(10 * time.Second)},
			Transforms: []Transform{{
				Module: filepath.Join(dir, "m.wasm"), Name: "filter", OnError: "skip",
				Config: map[string]any{"deny": []any{"*.secret"}},
			}},
			TombstoneHorizon: Duration(168 * time.Hour),
			BootstrapFrom:    "nats-object://snaps/routes.eu",
			Export: Export{
				To: "nats-object://snaps/routes.eu", Every: Duration(30 * time.Second),
				PruneGrace: Duration(2 * time.Hour), Replicas: 3,
			},
			ChangeBuffer: 1 << 20,
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse =\n%#v\nwant\n%#v", cfg, want)
	}
}

func TestUnlimitedBucketLimits(t *testing.T) {
	cfg, err := Parse("s.toml", []byte("[bucket.b]\nmax_bytes = 0\nmax_value_size = \"0B\"\n[bucket.c]\nmax_bytes = -1\n"+minimal))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range cfg.Buckets {
		if b.MaxBytes != -1 || b.MaxValueSize != -1 {
			t.Errorf("bucket %s: MaxBytes = %d, MaxValueSize = %d; want -1 (unlimited) for both", name, b.MaxBytes, b.MaxValueSize)
		}
	}
}

// minimal is a valid config that error cases extend.
const minimal = `[[fold]]
name = "a"
bucket = "b"
store = "sqlite"
`

// TestErrors checks, for each class of error, the exact message, line and key.
// DIR stands for the config file's directory.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "syntax error",
			doc:  "[[fold]]\nname = \"a\n",
			want: []string{`DIR/s.toml:2: fold[0].name: strings cannot contain newlines`},
		},
		{
			name: "syntax error in the second fold",
			doc:  minimal + "[[fold]]\nname = \"b\"\nbatch.window = \"10s\n",
			want: []string{`DIR/s.toml:7: fold[1].batch.window: strings cannot contain newlines`},
		},
		{
			name: "syntax error after a value",
			doc:  minimal + "[[fold]]\nname = \"b\"\nbatch.window = 10s\n",
			want: []string{`DIR/s.toml:7: fold[1]: expected a top-level item to end with a newline, comment, or EOF, but got 's' instead`},
		},
		{
			name: "syntax error outside any table",
			doc:  "= 1\n",
			want: []string{`DIR/s.toml:1: unexpected '=': key name appears blank`},
		},
		{
			name: "syntax error at the end of the file, with a control character",
			doc:  "a = \"\\",
			want: []string{`DIR/s.toml:1: a: invalid escape in string '\\x00'`},
		},
		{
			name: "duplicate key",
			doc:  minimal + "[nats]\nurl = \"a:1\"\nurl = \"b:1\"\n",
			want: []string{`DIR/s.toml:7: nats.url: Key 'nats.url' has already been defined.`},
		},
		{
			name: "type error",
			doc:  minimal + "[bucket.config]\nhistory = \"one\"\n",
			want: []string{`DIR/s.toml:6: bucket.config.history: want an integer, got the string "one"`},
		},
		{
			name: "type error in the first of two folds",
			doc:  "[[fold]]\nname = 1\nbucket = \"b\"\nstore = \"sqlite\"\n[[fold]]\nname = \"b\"\nbucket = \"b\"\nstore = \"sqlite\"\n",
			want: []string{`DIR/s.toml:2: fold[0].name: want a string, got the integer 1`},
		},
		{
			name: "type errors of tables and arrays",
			doc:  "log = \"debug\"\nfold = 1\n",
			want: []string{
				`DIR/s.toml:1: log: want a table, got the string "debug"`,
				`DIR/s.toml:2: fold: want an array, got the integer 1`,
			},
		},
		{
			name: "unknown key in the second fold",
			doc:  minimal + "[[fold]]\nname = \"c\"\nbucket = \"b\"\nstore = \"sqlite\"\nbogus = 1\n",
			want: []string{`DIR/s.toml:9: fold[1].bogus: unknown key`},
		},
		{
			name: "unknown keys with suggestions",
			doc:  minimal + "[nats]\nurll = \"x:1\"\n[fold.batchh]\nwindow = \"1s\"\n[[fold.transform]]\nmodul = \"x.wasm\"\n",
			want: []string{
				`DIR/s.toml:6: nats.urll: unknown key (did you mean "url"?)`,
				`DIR/s.toml:7: fold[0].batchh: unknown key (did you mean "batch"?)`,
				`DIR/s.toml:9: fold[0].transform[0].module: missing: name the .wasm file of the transform`,
				`DIR/s.toml:10: fold[0].transform[0].modul: unknown key (did you mean "module"?)`,
			},
		},
		{
			name: "unknown key in an inline array of tables",
			doc:  "fold = [\n  { name = \"a\", bucket = \"b\", store = \"sqlite\" },\n  { name = \"b\", bucket = \"b\", store = \"sqlite\", x = 1 },\n]\n",
			want: []string{`DIR/s.toml:3: fold[1].x: unknown key`},
		},
		{
			name: "missing required keys",
			doc:  "data_dir = \"d\"\n\n[[fold]]\nname = \"a\"\nbucket = \"b\"\nstore = \"sqlite\"\n\n[[fold]]\nbucket = \"b\"\n",
			want: []string{
				`DIR/s.toml:8: fold[1].name: missing: every fold needs a name`,
				`DIR/s.toml:8: fold[1].store: missing: set a plugin name such as "sqlite" or "pebble", or a path containing '/'`,
			},
		},
		{
			name: "no folds",
			doc:  "data_dir = \"d\"\n",
			want: []string{`DIR/s.toml:1: fold: no [[fold]] tables: at least one fold is required`},
		},
		{
			name: "bad scope",
			doc:  minimal + "scope = [\n  \"route.>\",\n  \"route..x\",\n  \"a b\",\n  \"route.a\",\n]\n",
			want: []string{
				`DIR/s.toml:7: fold[0].scope[1]: invalid subject filter "route..x": empty token`,
				`DIR/s.toml:8: fold[0].scope[2]: invalid subject filter "a b": contains whitespace`,
				`DIR/s.toml:9: fold[0].scope[3]: subject filter "route.a" overlaps "route.>" (scope[0]); NATS refuses overlapping filters on one consumer`,
			},
		},
		{
			name: "bad scope as a single string",
			doc:  minimal + "scope = \"route.>.x\"\n",
			want: []string{`DIR/s.toml:5: fold[0].scope[0]: invalid subject filter "route.>.x": '>' must be the last token`},
		},
		{
			name: "duplicate fold name",
			doc:  minimal + "\n[[fold]]\nname = \"a\"\nbucket = \"b\"\nstore = \"sqlite\"\n",
			want: []string{`DIR/s.toml:7: fold[1].name: duplicate fold name "a" (also fold[0].name, line 2)`},
		},
		{
			name: "nonexistent module file",
			doc:  minimal + "[[fold.transform]]\nmodule = \"bin/transforms/nope.wasm\"\n",
			want: []string{`DIR/s.toml:6: fold[0].transform[0].module: file "bin/transforms/nope.wasm" does not exist (looked for DIR/bin/transforms/nope.wasm)`},
		},
		{
			name: "bad durations",
			doc:  minimal + "batch.window = \"10\"\nreconcile_every = 30\ntombstone_horizon = \"-1h\"\n[nats]\nconnect_timeout = true\n",
			want: []string{
				`DIR/s.toml:5: fold[0].batch.window: invalid duration "10": want a number and a unit, such as "10ms", "30s" or "1h30m"`,
				`DIR/s.toml:6: fold[0].reconcile_every: a duration needs a unit: write "30s", not 30`,
				`DIR/s.toml:7: fold[0].tombstone_horizon: -1h0m0s is negative`,
				`DIR/s.toml:9: nats.connect_timeout: want a duration string such as "10s", got true`,
			},
		},
		{
			name: "bad bootstrap sources",
			doc: minimal + "bootstrap_from = \"s3://b/n\"\n\n[[fold]]\nname = \"c\"\nbucket = \"b\"\nstore = \"sqlite\"\nbootstrap_from = \"http:///x\"\n" +
				"\n[[fold]]\nname = \"d\"\nbucket = \"b\"\nstore = \"sqlite\"\nbootstrap_from = \"nats-object://snaps/a/b\"\n",
			want: []string{
				`DIR/s.toml:5: fold[0].bootstrap_from: unsupported source "s3://b/n": want a file path, an http(s):// URL or a nats-object://BUCKET/NAME series`,
				`DIR/s.toml:11: fold[1].bootstrap_from: invalid URL "http:///x": want http(s)://HOST/v1/folds/NAME/artifact`,
				`DIR/s.toml:17: fold[2].bootstrap_from: "nats-object://snaps/a/b": the series name "a/b" has a '/': NAME is one segment`,
			},
		},
		{
			name: "bad periodic exports",
			doc:  minimal + "[fold.export]\nto = \"nats-object://snaps\"\nevery = \"1500ms\"\nprune_grace = \"5m\"\nreplicas = 7\n",
			want: []string{
				`DIR/s.toml:6: fold[0].export.to: "nats-object://snaps": no series name: want nats-object://BUCKET/NAME`,
				`DIR/s.toml:7: fold[0].export.every: 1.5s is not a whole number of seconds (the lease's unit)`,
				`DIR/s.toml:8: fold[0].export.prune_grace: 5m0s is too short: at least 10m0s, the window in which an upload may still be published`,
				`DIR/s.toml:9: fold[0].export.replicas: 7 is out of range: want 1 to 5`,
			},
		},
		{
			name: "bad read bounds",
			doc:  minimal + "read_cache = -1\nchange_buffer = \"65GiB\"\n",
			want: []string{
				`DIR/s.toml:5: fold[0].read_cache: -1 is out of range: want 0 (off) to 64GiB`,
				`DIR/s.toml:6: fold[0].change_buffer: 65GiB is out of range: want 0 (off) to 64GiB`,
			},
		},
		{
			name: "bad byte sizes",
			doc:  minimal + "batch = { max_bytes = \"4 MeB\" }\n[bucket.b]\nmax_bytes = 1.5\nmax_value_size = \"0.5B\"\n",
			want: []string{
				`DIR/s.toml:5: fold[0].batch.max_bytes: invalid byte size "4 MeB": want bytes as an integer, or a number and a unit such as "512KiB", "4MiB" or "1GB"`,
				`DIR/s.toml:7: bucket.b.max_bytes: want a byte size such as 4096 or "4MiB", got the float 1.5`,
				`DIR/s.toml:8: bucket.b.max_value_size: invalid byte size "0.5B": not a whole number of bytes`,
			},
		},
		{
			name: "out of range values",
			doc: minimal + `batch.max_entries = 0
batch.max_bytes = "512MiB"
batch.window = "11s"
[bucket.b]
history = 65
replicas = 0
max_bytes = -2
max_value_size = "4GiB"
max_age = "-1s"
storage = "disk"
discard = "Old"
[[fold.transform]]
module = "m.wasm"
on_error = "ignore"
`,
			want: []string{
				`DIR/s.toml:5: fold[0].batch.max_entries: 0 is out of range: want 1 to 1000000`,
				`DIR/s.toml:6: fold[0].batch.max_bytes: 512MiB is out of range: want 1KiB to 256MiB`,
				`DIR/s.toml:7: fold[0].batch.window: 11s is out of range: want more than 0 and at most 10s`,
				`DIR/s.toml:9: bucket.b.history: 65 is out of range: want 1 to 64`,
				`DIR/s.toml:10: bucket.b.replicas: 0 is out of range: want 1 to 5`,
				`DIR/s.toml:11: bucket.b.max_bytes: -2 is negative; use -1 or 0 for unlimited`,
				`DIR/s.toml:12: bucket.b.max_value_size: 4294967296 is out of range: want -1 or 0 (unlimited) up to 2147483647 bytes`,
				`DIR/s.toml:13: bucket.b.max_age: -1s is negative`,
				`DIR/s.toml:14: bucket.b.storage: invalid value "disk": want file or memory`,
				`DIR/s.toml:15: bucket.b.discard: invalid value "Old": want new or old`,
				`DIR/s.toml:18: fold[0].transform[0].on_error: invalid value "ignore": want stall or skip`,
			},
		},
		{
			name: "names",
			doc:  "[bucket.\"b.c\"]\n[[fold]]\nname = \"a b\"\nbucket = \"b.c\"\nstore = \"my store\"\n",
			want: []string{
				`DIR/s.toml:1: bucket."b.c": invalid bucket name "b.c": use letters, digits, '_' and '-'`,
				`DIR/s.toml:3: fold[0].name: invalid fold name "a b": use 1 to 64 letters, digits, '_' and '-'`,
				`DIR/s.toml:4: fold[0].bucket: invalid bucket name "b.c": use letters, digits, '_' and '-'`,
				`DIR/s.toml:5: fold[0].store: invalid store "my store": want a plugin name such as "sqlite" (letters, digits, '_' and '-') or a path containing '/'`,
			},
		},
		{
			name: "log",
			doc:  minimal + "[log]\nlevel = \"verbose\"\nformat = \"yaml\"\n",
			want: []string{
				`DIR/s.toml:6: log.level: invalid value "verbose": want debug, info, warn or error`,
				`DIR/s.toml:7: log.format: invalid value "yaml": want auto, text or json`,
			},
		},
		{
			name: "listen addresses",
			doc:  minimal + "[nats]\nlisten = \"0.0.0.0:4222\"\n[http]\nlisten = \"localhost\"\n",
			want: []string{
				`DIR/s.toml:6: nats.listen: "0.0.0.0:4222" is not a loopback address; set allow_remote = true to accept remote connections`,
				`DIR/s.toml:8: http.listen: invalid address "localhost": want host:port, such as "127.0.0.1:7070"`,
			},
		},
		{
			name: "listen address without host, and bad port",
			doc:  "http.listen = \":7070\"\nnats.listen = \"[::1]:http\"\n" + minimal,
			want: []string{
				`DIR/s.toml:1: http.listen: ":7070" is not a loopback address; set allow_remote = true to accept remote connections`,
				`DIR/s.toml:2: nats.listen: invalid address "[::1]:http": port "http" is not a number from 0 to 65535`,
			},
		},
		{
			name: "nats url, with the password redacted",
			doc:  minimal + "[nats]\nurl = \"nats://a:4222,http://user:hunter2@b:80\"\n",
			want: []string{`DIR/s.toml:6: nats.url: invalid server URL "http://user:xxxxx@b:80": scheme "http"; want nats, tls, ws or wss`},
		},
		{
			name: "nats url that does not parse, with the password redacted",
			doc:  minimal + "[nats]\nurl = \"user:hunter2@b:port\"\n",
			want: []string{`DIR/s.toml:6: nats.url: invalid server URL "xxxxx@b:port": invalid port ":port" after host`},
		},
		{
			name: "nats url list with an empty entry",
			doc:  "nats.url = \"a:1,,b:2\"\n" + minimal,
			want: []string{`DIR/s.toml:1: nats.url: empty server in the list "a:1,,b:2"`},
		},
		{
			name: "nats auth and tls",
			doc:  minimal + "[nats]\ntoken = \"t\"\nnkey_seed = \"seed.nk\"\ntls_cert = \"cert.pem\"\n",
			want: []string{
				`DIR/s.toml:5: nats.tls_key: missing: tls_cert is set, so tls_key is required`,
				`DIR/s.toml:7: nats.nkey_seed: token and nkey_seed are alternatives; set only one of creds, token and nkey_seed`,
				`DIR/s.toml:8: nats.tls_cert: file "cert.pem" does not exist (looked for DIR/cert.pem)`,
			},
		},
		{
			name: "store_config values JSON cannot carry",
			doc:  minimal + "store_config = { ratio = nan, limits = [1.0, -inf] }\n",
			want: []string{
				`DIR/s.toml:5: fold[0].store_config.limits[1]: -Inf cannot be passed to the plugin as JSON`,
				`DIR/s.toml:5: fold[0].store_config.ratio: NaN cannot be passed to the plugin as JSON`,
			},
		},
		{
			name: "duplicate transform names",
			doc:  minimal + "[[fold.transform]]\nmodule = \"DIR/m.wasm\"\n[[fold.transform]]\nmodule = \"sub/m.wasm\"\n",
			want: []string{
				`DIR/s.toml:7: fold[0].transform[1].name: duplicate transform name "m" (also transform[0]); set name to tell them apart`,
				`DIR/s.toml:8: fold[0].transform[1].module: file "sub/m.wasm" does not exist (looked for DIR/sub/m.wasm)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "m.wasm")
			doc := strings.ReplaceAll(tt.doc, "DIR", dir)
			_, err := Parse(filepath.Join(dir, "s.toml"), []byte(doc))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error = %v (%T), want Errors", err, err)
			}
			got := strings.Split(strings.ReplaceAll(errs.Error(), dir, "DIR"), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestErrorsReportedTogether(t *testing.T) {
	doc := `[log]
level = "loud"
[[fold]]
name = "a"
bucket = "b"
store = "sqlite"
scope = ["x..y"]
[[fold]]
name = "a"
bucket = "b"
store = "sqlite"
batch.window = "fast"
colour = "blue"
`
	_, err := Parse("slipstream.toml", []byte(doc))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error = %v, want Errors", err)
	}
	want := []Error{
		{"slipstream.toml", 2, "log.level", `invalid value "loud": want debug, info, warn or error`},
		{"slipstream.toml", 7, "fold[0].scope[0]", `invalid subject filter "x..y": empty token`},
		{"slipstream.toml", 9, "fold[1].name", `duplicate fold name "a" (also fold[0].name, line 4)`},
		{"slipstream.toml", 12, "fold[1].batch.window", `invalid duration "fast": want a number and a unit, such as "10ms", "30s" or "1h30m"`},
		{"slipstream.toml", 13, "fold[1].colour", "unknown key"},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i := range want {
		if *errs[i] != want[i] {
			t.Errorf("error %d = %+v, want %+v", i, *errs[i], want[i])
		}
	}
	var first *Error
	if !errors.As(err, &first) || first != errs[0] {
		t.Errorf("errors.As(*Error) = %v, want the first error", first)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) || lines[0] != `slipstream.toml:2: log.level: invalid value "loud": want debug, info, warn or error` {
		t.Errorf("Error() =\n%s", err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		err  *Error
		want string
	}{
		{&Error{"slipstream.toml", 14, "fold[1].scope[0]", `invalid subject filter "route..x": empty token`},
			`slipstream.toml:14: fold[1].scope[0]: invalid subject filter "route..x": empty token`},
		{&Error{"s.toml", 1, "", "expected key"}, "s.toml:1: expected key"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestParseWithoutPath checks that in-memory configs resolve relative paths
// against the working directory.
func TestParseWithoutPath(t *testing.T) {
	cfg, err := Parse("", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != "" || cfg.DataDir != filepath.Join(wd, "data") {
		t.Errorf("Path = %q, DataDir = %q; want \"\" and %q", cfg.Path, cfg.DataDir, filepath.Join(wd, "data"))
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load = %v, want an error wrapping os.ErrNotExist", err)
	}
}

func writeFile(t *testing.T, dir, name string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPAccess loads a remote API with a token file and TLS: relative
// paths resolve against the config's directory, the token is read and
// trimmed, and printing the config does not show it.
func TestHTTPAccess(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "tls/cert.pem")
	writeFile(t, dir, "tls/key.pem")
	if err := os.WriteFile(filepath.Join(dir, "api.token"), []byte("\n  s3cr3t-T0ken_value \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(filepath.Join(dir, "s.toml"), []byte(`[http]
listen = "0.0.0.0:7070"
allow_remote = true
token_file = "api.token"
tls_cert = "tls/cert.pem"
tls_key = "`+filepath.Join(dir, "tls/key.pem")+`"
`+minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := HTTP{
		Listen: "0.0.0.0:7070", AllowRemote: true,
		TokenFile: filepath.Join(dir, "api.token"), Token: "s3cr3t-T0ken_value",
		TLSCert: filepath.Join(dir, "tls/cert.pem"), TLSKey: filepath.Join(dir, "tls/key.pem"),
	}
	if cfg.HTTP != want {
		t.Errorf("HTTP = %+v, want %+v", cfg.HTTP, want)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "token", cfg.HTTP.Token, "http", cfg.HTTP)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "token", cfg.HTTP.Token, "http", cfg.HTTP)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg.HTTP), fmt.Sprintf("%#v", cfg.HTTP), logged.String()} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("the token shows in %s", s)
		}
		if !strings.Contains(s, "[redacted]") {
			t.Errorf("no [redacted] in %s", s)
		}
	}

	// A token file on a loopback API is allowed too, and TLS is optional.
	cfg, err = Parse(filepath.Join(dir, "s.toml"), []byte("http.token_file = \"api.token\"\n"+minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Token != "s3cr3t-T0ken_value" || cfg.HTTP.TLSCert != "" {
		t.Errorf("loopback HTTP = %+v", cfg.HTTP)
	}
	// Without token_file there is no token.
	cfg, err = Parse(filepath.Join(dir, "s.toml"), []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Token != "" || cfg.HTTP.TokenFile != "" {
		t.Errorf("default HTTP = %+v", cfg.HTTP)
	}
}

// TestHTTPAccessErrors checks the messages about the API's token and TLS
// files. DIR stands for the config file's directory, which holds the token
// files named here; no message may quote a token.
func TestHTTPAccessErrors(t *testing.T) {
	files := map[string]string{
		"good.token":   "tok3n\n",
		"blank.token":  " \n\t\n",
		"spaced.token": "tok3n and more\n",
		"lines.token":  "tok3n\nsecond\n",
		"utf8.token":   "tok3né",
		"big.token":    strings.Repeat("t", 5000),
		"cert.pem":     "",
	}
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "remote listen without a token",
			doc:  "[http]\nlisten = \"0.0.0.0:7070\"\nallow_remote = true\n" + minimal,
			want: []string{`DIR/s.toml:1: http.token_file: missing: listen "0.0.0.0:7070" is not a loopback address, so the API needs a bearer token; name a file holding it`},
		},
		{
			name: "remote host name without a token",
			doc:  minimal + "[http]\nlisten = \"api.example.com:7070\"\nallow_remote = true\ntls_cert = \"cert.pem\"\n",
			want: []string{
				`DIR/s.toml:5: http.tls_key: missing: tls_cert is set, so tls_key is required`,
				`DIR/s.toml:5: http.token_file: missing: listen "api.example.com:7070" is not a loopback address, so the API needs a bearer token; name a file holding it`,
			},
		},
		{
			name: "remote listen without allow_remote is reported as such first",
			doc:  "http.listen = \"10.0.0.1:7070\"\n" + minimal,
			want: []string{`DIR/s.toml:1: http.listen: "10.0.0.1:7070" is not a loopback address; set allow_remote = true to accept remote connections`},
		},
		{
			name: "remote listen with a token file that does not exist",
			doc:  "[http]\nlisten = \"[::]:7070\"\nallow_remote = true\ntoken_file = \"missing.token\"\n" + minimal,
			want: []string{`DIR/s.toml:4: http.token_file: file "missing.token" does not exist (looked for DIR/missing.token)`},
		},
		{
			name: "token file that is a directory",
			doc:  "http.token_file = \".\"\n" + minimal,
			want: []string{`DIR/s.toml:1: http.token_file: "." is a directory, not a file`},
		},
		{
			name: "blank token file",
			doc:  minimal + "[http]\ntoken_file = \"blank.token\"\n",
			want: []string{`DIR/s.toml:6: http.token_file: DIR/blank.token holds no token: it is empty or only whitespace`},
		},
		{
			name: "token with a space",
			doc:  minimal + "[http]\ntoken_file = \"spaced.token\"\n",
			want: []string{`DIR/s.toml:6: http.token_file: the token in DIR/spaced.token has a space, a control or a non-ASCII character at byte 6; a bearer token is one word of visible ASCII`},
		},
		{
			name: "token of two lines",
			doc:  minimal + "[http]\ntoken_file = \"lines.token\"\n",
			want: []string{`DIR/s.toml:6: http.token_file: the token in DIR/lines.token has a space, a control or a non-ASCII character at byte 6; a bearer token is one word of visible ASCII`},
		},
		{
			name: "non-ASCII token",
			doc:  minimal + "[http]\ntoken_file = \"utf8.token\"\n",
			want: []string{`DIR/s.toml:6: http.token_file: the token in DIR/utf8.token has a space, a control or a non-ASCII character at byte 6; a bearer token is one word of visible ASCII`},
		},
		{
			name: "token file too large",
			doc:  minimal + "[http]\ntoken_file = \"big.token\"\n",
			want: []string{`DIR/s.toml:6: http.token_file: DIR/big.token is larger than 4096 bytes; it should hold one token`},
		},
		{
			name: "tls key without cert, and a missing key file",
			doc:  minimal + "[http]\ntoken_file = \"good.token\"\ntls_key = \"key.pem\"\n",
			want: []string{
				`DIR/s.toml:5: http.tls_cert: missing: tls_key is set, so tls_cert is required`,
				`DIR/s.toml:7: http.tls_key: file "key.pem" does not exist (looked for DIR/key.pem)`,
			},
		},
		{
			name: "files are checked with the API off too",
			doc:  "[http]\nlisten = \"off\"\ntoken_file = \"blank.token\"\n" + minimal,
			want: []string{`DIR/s.toml:3: http.token_file: DIR/blank.token holds no token: it is empty or only whitespace`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			doc := strings.ReplaceAll(tt.doc, "DIR", dir)
			_, err := Parse(filepath.Join(dir, "s.toml"), []byte(doc))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error = %v (%T), want Errors", err, err)
			}
			msg := errs.Error()
			if strings.Contains(msg, "tok3n") {
				t.Errorf("a message quotes the token: %s", msg)
			}
			got := strings.Split(strings.ReplaceAll(msg, dir, "DIR"), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
