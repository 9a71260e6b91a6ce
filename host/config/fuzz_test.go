package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParse checks that Parse never panics and that every error it returns is
// an *Error in Errors, at a line of the document, with a message. The only
// error without a key is a lone syntax error outside any table. For every
// document the TOML parser accepts, it also checks that the locator knows the
// line of every key the parser found.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.toml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range append(seeds, exampleFile) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	file := filepath.Join(f.TempDir(), "fuzz.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLocatorKnowsEveryKey(t, data)
		cfg, err := Parse(file, data)
		if err == nil {
			if cfg == nil || len(cfg.Folds) == 0 {
				t.Fatalf("Parse succeeded with %+v", cfg)
			}
			return
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("Parse error %v (%T) is not a non-empty Errors", err, err)
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, e := range errs {
			if e.File != file || e.Line < 1 || e.Line > lines || e.Msg == "" {
				t.Errorf("bad error %+v in a document of %d lines", *e, lines)
			}
			if e.Key == "" && len(errs) > 1 {
				t.Errorf("error without a key among others: %+v", *e)
			}
			if prefix := fmt.Sprintf("%s:%d: ", e.File, e.Line); !strings.HasPrefix(e.Error(), prefix) {
				t.Errorf("Error() = %q, want prefix %q", e.Error(), prefix)
			}
		}
	})
}

func checkLocatorKnowsEveryKey(t *testing.T, data []byte) {
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		return
	}
	loc := newLocator(data)
	lines := strings.Count(string(data), "\n") + 1
	var walk func(p path, v any)
	walk = func(p path, v any) {
		if len(p) > 0 {
			if line, ok := loc.lines[p.String()]; !ok || line < 1 || line > lines {
				t.Errorf("locator: %s at line %d (found %v) in a document of %d lines", p, line, ok, lines)
			}
		}
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(p.key(k), e)
			}
		case []map[string]any:
			for i, e := range v {
				walk(p.index(i), e)
			}
		case []any:
			for i, e := range v {
				walk(p.index(i), e)
			}
		}
	}
	walk(nil, tree)
}

// TestSeeds pins what the seed corpus exercises, so that the fuzz seeds stay
// meaningful: valid seeds parse, broken ones report what they were written for.
func TestSeeds(t *testing.T) {
	for _, tt := range []struct {
		file string
		want []string // errors, with the testdata directory as DIR
	}{
		{file: "full.toml"},
		{file: "tricky.toml", want: []string{
			`DIR/tricky.toml:7: bucket."odd.name": invalid bucket name "odd.name": use letters, digits, '_' and '-'`,
			`DIR/tricky.toml:21: fold[0].transform[0].module: file "m.wasm" does not exist (looked for DIR/m.wasm)`,
		}},
		{file: "syntax.toml", want: []string{
			`DIR/syntax.toml:7: fold[1].name: strings cannot contain newlines`,
		}},
		{file: "errors.toml", want: []string{
			`DIR/errors.toml:1: data_dir: must not be empty; the default is "data"`,
			`DIR/errors.toml:2: unknown: unknown key`,
			`DIR/errors.toml:5: log.level: invalid value "loud": want debug, info, warn or error`,
			`DIR/errors.toml:7: nats.tls_cert: missing: tls_key is set, so tls_cert is required`,
			`DIR/errors.toml:8: nats.url: invalid server URL "http://u:xxxxx@h:1": scheme "http"; want nats, tls, ws or wss`,
			`DIR/errors.toml:9: nats.listen: "0.0.0.0:4222" is not a loopback address; set allow_remote = true to accept remote connections`,
			`DIR/errors.toml:10: nats.token: creds and token are alternatives; set only one of creds, token and nkey_seed`,
			`DIR/errors.toml:11: nats.creds: file "missing.creds" does not exist (looked for DIR/missing.creds)`,
			`DIR/errors.toml:12: nats.tls_key: file "missing.key" does not exist (looked for DIR/missing.key)`,
			`DIR/errors.toml:13: nats.connect_timeout: a duration needs a unit: write "5s", not 5`,
			`DIR/errors.toml:16: http.listen: ":7070" is not a loopback address; set allow_remote = true to accept remote connections`,
			`DIR/errors.toml:18: bucket."bad name": invalid bucket name "bad name": use letters, digits, '_' and '-'`,
			`DIR/errors.toml:19: bucket."bad name".history: want an integer, got the string "one"`,
			`DIR/errors.toml:20: bucket."bad name".replicas: 9 is out of range: want 1 to 5`,
			`DIR/errors.toml:21: bucket."bad name".max_bytes: invalid byte size "4 MeB": want bytes as an integer, or a number and a unit such as "512KiB", "4MiB" or "1GB"`,
			`DIR/errors.toml:23: fold[0].bucket: missing: name the KV bucket to fold`,
			`DIR/errors.toml:23: fold[0].store: missing: set a plugin name such as "sqlite" or "pebble", or a path containing '/'`,
			`DIR/errors.toml:25: fold[0].scope[0]: invalid subject filter "a..b": empty token`,
			`DIR/errors.toml:25: fold[0].scope[1]: invalid subject filter "x.>.y": '>' must be the last token`,
			`DIR/errors.toml:25: fold[0].scope[3]: subject filter "c.d" overlaps "c.*" (scope[2]); NATS refuses overlapping filters on one consumer`,
			`DIR/errors.toml:26: fold[0].store_config.r: NaN cannot be passed to the plugin as JSON`,
			`DIR/errors.toml:27: fold[0].batch.max_bytes: 1 is out of range: want 1KiB to 256MiB`,
			`DIR/errors.toml:27: fold[0].batch.max_entries: 0 is out of range: want 1 to 1000000`,
			`DIR/errors.toml:27: fold[0].batch.window: 0s is out of range: want more than 0 and at most 10s`,
			`DIR/errors.toml:30: fold[1].name: duplicate fold name "dup" (also fold[0].name, line 24)`,
			`DIR/errors.toml:32: fold[1].store: invalid store "no spaces allowed": want a plugin name such as "sqlite" (letters, digits, '_' and '-') or a path containing '/'`,
			`DIR/errors.toml:33: fold[1].bogus: unknown key`,
			`DIR/errors.toml:36: fold[1].transform[0].module: file "nope.wasm" does not exist (looked for DIR/nope.wasm)`,
			`DIR/errors.toml:37: fold[1].transform[0].on_error: invalid value "ignore": want stall or skip`,
		}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			dir, err := filepath.Abs("testdata")
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(filepath.Join(dir, tt.file))
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want errors")
			}
			got := strings.Split(strings.ReplaceAll(err.Error(), dir, "DIR"), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
