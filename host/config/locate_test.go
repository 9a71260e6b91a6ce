package config

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestLocatorLine(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want map[string]int // path → line
	}{
		{
			name: "tables and top-level keys",
			doc: `data_dir = "data"
[nats]
url = "nats://h:4222"

[http]
  listen = "127.0.0.1:7070"
`,
			want: map[string]int{"data_dir": 1, "nats": 2, "nats.url": 3, "http": 5, "http.listen": 6},
		},
		{
			name: "arrays of tables and nested arrays",
			doc: `[[fold]]
name = "a"
[fold.batch]
window = "1s"
[[fold]]
name = "b"
[[fold.transform]]
module = "x.wasm"
[[fold.transform]]
module = "y.wasm"
[fold.transform.config]
deny = ["a"]
[fold.batch]
max_entries = 5
`,
			want: map[string]int{
				"fold": 1, "fold[0]": 1, "fold[0].name": 2, "fold[0].batch": 3, "fold[0].batch.window": 4,
				"fold[1]": 5, "fold[1].name": 6,
				"fold[1].transform": 7, "fold[1].transform[0]": 7, "fold[1].transform[0].module": 8,
				"fold[1].transform[1]": 9, "fold[1].transform[1].module": 10,
				"fold[1].transform[1].config": 11, "fold[1].transform[1].config.deny": 12,
				"fold[1].transform[1].config.deny[0]": 12, "fold[1].batch": 13,
				"fold[1].batch.max_entries": 14,
			},
		},
		{
			name: "dotted keys",
			doc: `[[fold]]
name = "a"
batch.window = "1s"
batch . max_bytes = "1MiB"
[bucket]
config.history = 3
`,
			want: map[string]int{
				"fold[0].batch": 3, "fold[0].batch.window": 3, "fold[0].batch.max_bytes": 4,
				"bucket": 5, "bucket.config": 6, "bucket.config.history": 6,
			},
		},
		{
			name: "inline tables, on one line and over several",
			doc: `[[fold]]
batch = { window = "1s", max_entries = 5 }
store_config = {
  path = "x",  # comment with = and [x]
  pragma = { journal = "wal" },
}
transform = [ { module = "a.wasm" },
  { module = "b.wasm", config = { deny = ["*.secret"] } } ]
`,
			want: map[string]int{
				"fold[0].batch": 2, "fold[0].batch.window": 2, "fold[0].batch.max_entries": 2,
				"fold[0].store_config": 3, "fold[0].store_config.path": 4,
				"fold[0].store_config.pragma": 5, "fold[0].store_config.pragma.journal": 5,
				"fold[0].transform": 7, "fold[0].transform[0]": 7, "fold[0].transform[0].module": 7,
				"fold[0].transform[1]": 8, "fold[0].transform[1].module": 8,
				"fold[0].transform[1].config.deny[0]": 8,
			},
		},
		{
			name: "quoted keys",
			doc: `"nats"."url" = "x"
[bucket."my.bucket"]
'history' = 2
[bucket."esc\u0061ped"]
"a\"b" = 1
[ bucket . 'lit.eral' ]
replicas = 3
`,
			want: map[string]int{
				"nats.url": 1, `bucket."my.bucket"`: 2, `bucket."my.bucket".history`: 3,
				"bucket.escaped": 4, `bucket.escaped."a\"b"`: 5,
				`bucket."lit.eral"`: 6, `bucket."lit.eral".replicas`: 7,
			},
		},
		{
			name: "comments and strings that look like syntax",
			doc: `# [[fold]] name = "not a key"
[nats] # [http] listen = "no"
token = "a # b [c] = d" # [[fold]]
name = '''
[[fold]]
x = 1
'''
creds = """
a \"""
[http]
"""
tls_ca = "c"
scope = [ # [x]
  "a.>", # y = [
  "b.*",
]
tls_key = [
  """a""""",
  '''b''''',
  "c",
]
`,
			want: map[string]int{
				"nats": 2, "nats.token": 3, "nats.name": 4, "nats.creds": 8, "nats.tls_ca": 12,
				"nats.scope": 13, "nats.scope[0]": 14, "nats.scope[1]": 15,
				"nats.tls_key[0]": 18, "nats.tls_key[1]": 19, "nats.tls_key[2]": 20,
			},
		},
		{
			name: "absent keys resolve to their enclosing table",
			doc: `data_dir = "d"

[[fold]]
name = "a"

[[fold]]
name = "b"
batch = { window = "1s" }
`,
			want: map[string]int{
				"fold[1].store": 6, "fold[1].batch.max_bytes": 8, "fold[0].scope[3]": 3,
				"log.level": 1, "fold[2]": 3,
			},
		},
		{
			name: "super-table header after its sub-table",
			doc: `[bucket.a.x]
y = 1
[bucket.a]
history = 2
`,
			want: map[string]int{"bucket": 1, "bucket.a.x": 1, "bucket.a": 3, "bucket.a.replicas": 3},
		},
		{
			name: "byte order mark and CRLF",
			doc:  "\ufeffdata_dir = \"d\"\r\n[nats]\r\nurl = \"x\"\r\n",
			want: map[string]int{"data_dir": 1, "nats": 2, "nats.url": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tree map[string]any
			if _, err := toml.Decode(tt.doc, &tree); err != nil {
				t.Fatalf("test document is not valid TOML: %v", err)
			}
			loc := newLocator([]byte(tt.doc))
			for key, want := range tt.want {
				p := parsePath(t, key)
				if got := loc.line(p); got != want {
					t.Errorf("line(%s) = %d, want %d", key, got, want)
				}
			}
		})
	}
}

func TestLocatorTableAt(t *testing.T) {
	doc := `a = 1
[[fold]]
name = "a"
[[fold]]
[fold.batch]
window = "1s"
`
	loc := newLocator([]byte(doc))
	for line, want := range map[int]string{1: "", 2: "", 3: "fold[0]", 4: "fold[0]", 5: "fold[1]", 6: "fold[1].batch", 9: "fold[1].batch"} {
		if got := loc.tableAt(line).String(); got != want {
			t.Errorf("tableAt(%d) = %q, want %q", line, got, want)
		}
	}
}

// TestLocatorTerminates feeds the locator broken input: it must neither hang
// nor panic, and every line it reports must be in the document.
func TestLocatorTerminates(t *testing.T) {
	for _, doc := range []string{
		"", "[", "[[", "[[a]", "a", "a =", `a = "`, `a = """`, "a = '''", "a = [", "a = {", "a = [1,",
		"a = {b", `"`, "a.", "= 1", "a = ]", "[a]]", strings.Repeat("[", 10000), "x = " + strings.Repeat("[", 10000),
		"x = " + strings.Repeat("{a=", 10000), `a = "\u12`, "\ufeff", "a = 1 b = 2\n[c] d",
	} {
		loc := newLocator([]byte(doc))
		n := strings.Count(doc, "\n") + 1
		for k, line := range loc.lines {
			if line < 1 || line > n {
				t.Errorf("%q: %s at line %d, outside 1..%d", doc, k, line, n)
			}
		}
	}
}

// parsePath reads a printed path back, so that tests can name paths as errors
// print them.
func parsePath(t *testing.T, s string) path {
	t.Helper()
	var p path
	sc := &scanner{src: []byte(s)}
	for !sc.eof() {
		if sc.peek() == '.' {
			sc.advance()
		}
		if sc.peek() == '[' {
			sc.advance()
			n := 0
			for sc.peek() >= '0' && sc.peek() <= '9' {
				n = n*10 + int(sc.peek()-'0')
				sc.advance()
			}
			if sc.peek() != ']' {
				t.Fatalf("bad path %q", s)
			}
			sc.advance()
			p = p.index(n)
			continue
		}
		start := sc.pos
		switch sc.peek() {
		case '"':
			sc.advance()
			p = p.key(sc.basicString())
		default:
			for !sc.eof() && isBareKeyByte(sc.peek()) {
				sc.advance()
			}
			p = p.key(s[start:sc.pos])
		}
		if sc.pos == start {
			t.Fatalf("bad path %q", s)
		}
	}
	if p.String() != s {
		t.Fatalf("path %q prints as %q", s, p.String())
	}
	return p
}
