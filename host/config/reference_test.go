package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// The configuration reference, docs/config.md, is checked against the
// schema (the Config structs) so that it cannot drift. Its convention:
//
//   - every key is one row of a Markdown table whose first cell is the full
//     dotted key in backticks: `fold.batch.window`. Keys of [[fold]] and
//     [[fold.transform]] carry no index; a name chosen by the user is NAME
//     (`bucket.NAME.history`). Other rows (headers) have no backticked key.
//   - the second cell is the key's type, exactly one of refTypes' values.
//   - the third cell is the default: one backticked TOML value as the file
//     would write it (`"10ms"`, `1000`, `true`, `[]`, `{}`), or the word
//     required (no default) or derived (computed from other values). A
//     backticked default is checked: a file setting the key to it must load
//     exactly as a file leaving the key out. The keys without one must be
//     those listed in uncheckedDefaults.
const referenceDoc = "../../docs/config.md"

// uncheckedDefaults are the keys whose default the test cannot check,
// because they have none (required) or it depends on other keys (derived).
var uncheckedDefaults = map[string]string{
	"fold.name":             "required",
	"fold.bucket":           "required",
	"fold.store":            "required",
	"fold.transform.module": "required",
	"fold.transform.name":   "derived",
}

// refKey is one leaf key of the schema and the type the reference gives it.
type refKey struct{ path, typ string }

// schemaKeys lists the leaf keys of the struct type t under prefix,
// following the toml tags as the decoder does.
func schemaKeys(t reflect.Type, prefix string) ([]refKey, error) {
	var out []refKey
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		p := prefix + name
		typ, sub, err := refType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if sub == nil {
			out = append(out, refKey{p, typ})
			continue
		}
		if typ != "" { // a map of tables: [bucket.NAME]
			p += "." + typ
		}
		keys, err := schemaKeys(sub, p+".")
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
	}
	return out, nil
}

// refType is the reference's name of a leaf type, or the struct type a
// table, a map of tables (with "NAME" as typ) or an array of tables holds.
func refType(t reflect.Type) (typ string, sub reflect.Type, err error) {
	switch t {
	case durationType:
		return "duration", nil, nil
	case byteSizeType:
		return "byte size", nil, nil
	}
	switch t.Kind() {
	case reflect.String:
		return "string", nil, nil
	case reflect.Int:
		return "integer", nil, nil
	case reflect.Bool:
		return "bool", nil, nil
	case reflect.Struct:
		return "", t, nil
	case reflect.Map:
		switch t.Elem().Kind() {
		case reflect.Interface:
			return "table", nil, nil
		case reflect.Struct:
			return "NAME", t.Elem(), nil
		}
	case reflect.Slice:
		switch t.Elem().Kind() {
		case reflect.String:
			return "array of strings", nil, nil
		case reflect.Struct:
			return "", t.Elem(), nil
		}
	}
	return "", nil, fmt.Errorf("no reference type for %s: teach refType about it", t)
}

// refRow is one documented key.
type refRow struct {
	line               int
	key, typ, defaults string
}

var refKeyCell = regexp.MustCompile("^`([A-Za-z0-9_.]+)`$")

// parseReference reads the rows of doc's tables whose first cell is a
// backticked key.
func parseReference(doc []byte) []refRow {
	var rows []refRow
	for i, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		m := refKeyCell.FindStringSubmatch(strings.TrimSpace(cells[0]))
		if m == nil {
			continue
		}
		r := refRow{line: i + 1, key: m[1]}
		if len(cells) > 1 {
			r.typ = strings.TrimSpace(cells[1])
		}
		if len(cells) > 2 {
			r.defaults = strings.TrimSpace(cells[2])
		}
		rows = append(rows, r)
	}
	return rows
}

// keyProblems compares the documented rows with the schema: keys missing
// from the doc, keys the schema does not have, keys documented twice and
// wrong types.
func keyProblems(rows []refRow, schema []refKey) []string {
	var problems []string
	want := map[string]string{}
	for _, k := range schema {
		want[k.path] = k.typ
	}
	seen := map[string]int{}
	for _, r := range rows {
		if first, dup := seen[r.key]; dup {
			problems = append(problems, fmt.Sprintf("line %d: %s documented twice (also line %d)", r.line, r.key, first))
			continue
		}
		seen[r.key] = r.line
		typ, ok := want[r.key]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("line %d: %s is documented but is not a key of the schema", r.line, r.key))
		case r.typ != typ:
			problems = append(problems, fmt.Sprintf("line %d: %s has type %q in the doc; the schema's is %q", r.line, r.key, r.typ, typ))
		}
	}
	for _, k := range schema {
		if _, ok := seen[k.path]; !ok {
			problems = append(problems, fmt.Sprintf("%s (%s) is a key of the schema but is not documented", k.path, k.typ))
		}
	}
	return problems
}

var refDefaultCell = regexp.MustCompile("^`([^`]+)`$")

// defaultProblems checks every documented default: a file setting the key
// to it must load as the file leaving it out does. Rows with required or
// derived must be exactly those of uncheckedDefaults. dir is a scratch
// directory.
func defaultProblems(rows []refRow, dir string, unchecked map[string]string) ([]string, error) {
	if err := os.WriteFile(filepath.Join(dir, "t.wasm"), []byte("\x00asm"), 0o600); err != nil {
		return nil, err
	}
	base, err := parseTree(dir, baseTree())
	if err != nil {
		return nil, fmt.Errorf("the minimal config does not load: %w", err)
	}
	var problems []string
	for _, r := range rows {
		if word, ok := unchecked[r.key]; ok {
			if r.defaults != word {
				problems = append(problems, fmt.Sprintf("line %d: %s: default %q; want %q (or take the key out of uncheckedDefaults)", r.line, r.key, r.defaults, word))
			}
			continue
		}
		m := refDefaultCell.FindStringSubmatch(r.defaults)
		if m == nil {
			problems = append(problems, fmt.Sprintf("line %d: %s: default %q is not one backticked TOML value", r.line, r.key, r.defaults))
			continue
		}
		var lit map[string]any
		if _, err := toml.Decode("v = "+m[1], &lit); err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %s: default %s is not a TOML value: %v", r.line, r.key, m[1], err))
			continue
		}
		tree := baseTree()
		if err := setPath(tree, strings.Split(r.key, "."), lit["v"]); err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %s: %v", r.line, r.key, err))
			continue
		}
		cfg, err := parseTree(dir, tree)
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %s = %s does not load: %v", r.line, r.key, m[1], err))
			continue
		}
		got, err := fieldAt(reflect.ValueOf(cfg).Elem(), r.key)
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", r.line, err))
			continue
		}
		def, _ := fieldAt(reflect.ValueOf(base).Elem(), r.key)
		if !sameValue(got, def) {
			problems = append(problems, fmt.Sprintf("line %d: %s: the doc's default %s loads as %s; the code's default is %s", r.line, r.key, m[1], show(got), show(def)))
		}
	}
	return problems, nil
}

// baseTree is the smallest valid config with one of every table that has
// defaults of its own: a [bucket.b], a [[fold]] and a [[fold.transform]].
func baseTree() map[string]any {
	return map[string]any{
		"bucket": map[string]any{"b": map[string]any{}},
		"fold": []map[string]any{{
			"name": "f", "bucket": "b", "store": "sqlite",
			"transform": []map[string]any{{"module": "t.wasm"}},
		}},
	}
}

// setPath sets the key path (NAME for the map key, the first element for
// an array of tables) in tree to v, creating tables on the way.
func setPath(tree map[string]any, path []string, v any) error {
	node := tree
	for i, name := range path {
		if name == "NAME" {
			name = "b"
		}
		if i == len(path)-1 {
			node[name] = v
			return nil
		}
		switch next := node[name].(type) {
		case nil:
			m := map[string]any{}
			node[name], node = m, m
		case map[string]any:
			node = next
		case []map[string]any:
			node = next[0]
		default:
			return fmt.Errorf("%s is not a table in the minimal config", strings.Join(path[:i+1], "."))
		}
	}
	return nil
}

// parseTree encodes tree as a config file in dir and parses it.
func parseTree(dir string, tree map[string]any) (*Config, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(tree); err != nil {
		return nil, err
	}
	return Parse(filepath.Join(dir, "slipstream.toml"), buf.Bytes())
}

// fieldAt is the field of a Config at a documented key path.
func fieldAt(v reflect.Value, key string) (reflect.Value, error) {
	for _, name := range strings.Split(key, ".") {
		switch v.Kind() {
		case reflect.Slice:
			if v.Len() == 0 {
				return v, fmt.Errorf("%s: empty array before %s", key, name)
			}
			v = v.Index(0)
		case reflect.Map:
			v = v.MapIndex(reflect.ValueOf("b"))
			if !v.IsValid() {
				return v, fmt.Errorf("%s: no [bucket.b]", key)
			}
			if name == "NAME" {
				continue
			}
		}
		if name == "NAME" {
			return v, fmt.Errorf("%s: NAME where no map is", key)
		}
		i, ok := tomlFields(v.Type())[name]
		if !ok {
			return v, fmt.Errorf("%s: no field %s in %s", key, name, v.Type())
		}
		v = v.Field(i)
	}
	return v, nil
}

// show formats a config value as a message shows it: strings quoted,
// durations and sizes in their units.
func show(v reflect.Value) string {
	if v.Kind() == reflect.String {
		return fmt.Sprintf("%q", v.String())
	}
	return fmt.Sprintf("%v", v.Interface())
}

// sameValue is reflect.DeepEqual, with nil and empty maps and slices alike.
func sameValue(a, b reflect.Value) bool {
	if k := a.Kind(); (k == reflect.Map || k == reflect.Slice) && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func readReference(t *testing.T) []byte {
	t.Helper()
	doc, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func schema(t *testing.T) []refKey {
	t.Helper()
	keys, err := schemaKeys(reflect.TypeFor[Config](), "")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestReferenceKeys: docs/config.md documents every key of the schema with
// its type, and no key the schema lacks.
func TestReferenceKeys(t *testing.T) {
	rows := parseReference(readReference(t))
	for _, p := range keyProblems(rows, schema(t)) {
		t.Error(p)
	}
	t.Logf("%d keys documented", len(rows))
}

// TestReferenceDefaults: every default docs/config.md gives is the code's.
func TestReferenceDefaults(t *testing.T) {
	problems, err := defaultProblems(parseReference(readReference(t)), t.TempDir(), uncheckedDefaults)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("defaults not checked: %v", slices.Sorted(func(yield func(string) bool) {
		for k := range uncheckedDefaults {
			if !yield(k) {
				return
			}
		}
	}))
}

// TestReferenceExample: the example file of docs/config.md loads.
func TestReferenceExample(t *testing.T) {
	doc := string(readReference(t))
	_, after, ok := strings.Cut(doc, "## Example")
	if !ok {
		t.Fatal("docs/config.md has no ## Example section")
	}
	_, block, ok := strings.Cut(after, "```toml\n")
	if !ok {
		t.Fatal("the example section has no ```toml block")
	}
	block, _, _ = strings.Cut(block, "```")
	dir := t.TempDir()
	var tree map[string]any
	if _, err := toml.Decode(block, &tree); err != nil {
		t.Fatalf("example: %v", err)
	}
	// Stand-ins for the files the example names, which must exist.
	for _, p := range filesNamed(tree) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("token"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Parse(filepath.Join(dir, "slipstream.toml"), []byte(block)); err != nil {
		t.Fatalf("the example does not load:\n%v", err)
	}
}

// filesNamed returns the values of the keys that name files that must exist.
func filesNamed(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			switch k {
			case "module", "token_file", "creds", "nkey_seed", "tls_ca", "tls_cert", "tls_key":
				if s, ok := e.(string); ok {
					out = append(out, s)
					continue
				}
			}
			out = append(out, filesNamed(e)...)
		}
	case []map[string]any:
		for _, e := range v {
			out = append(out, filesNamed(e)...)
		}
	}
	return out
}

// TestReferenceCheckFails: the checks above report a key left out of the
// doc, a key the schema lacks, a wrong type and a wrong default.
func TestReferenceCheckFails(t *testing.T) {
	doc := string(readReference(t))
	keys := schema(t)
	row := func(key string) string {
		for _, line := range strings.Split(doc, "\n") {
			if strings.HasPrefix(line, "| `"+key+"` |") {
				return line
			}
		}
		t.Fatalf("no row for %s", key)
		return ""
	}
	// Only the problems the change adds count, so that a real drift fails
	// TestReferenceKeys and TestReferenceDefaults, not these cases too.
	baseline := keyProblems(parseReference([]byte(doc)), keys)
	baseDefaults, err := defaultProblems(parseReference([]byte(doc)), t.TempDir(), uncheckedDefaults)
	if err != nil {
		t.Fatal(err)
	}
	baseline = append(baseline, baseDefaults...)
	expect := func(t *testing.T, problems []string, want ...string) {
		t.Helper()
		problems = slices.DeleteFunc(problems, func(p string) bool { return slices.Contains(baseline, p) })
		if len(problems) != len(want) {
			t.Fatalf("got %d problems, want %d:\n%s", len(problems), len(want), strings.Join(problems, "\n"))
		}
		for i, w := range want {
			if !strings.Contains(problems[i], w) {
				t.Errorf("problem %q does not say %q", problems[i], w)
			}
		}
	}
	t.Run("missing", func(t *testing.T) {
		cut := strings.Replace(doc, row("fold.batch.window")+"\n", "", 1)
		expect(t, keyProblems(parseReference([]byte(cut)), keys),
			"fold.batch.window (duration) is a key of the schema but is not documented")
	})
	t.Run("extra", func(t *testing.T) {
		extra := strings.Replace(doc, row("fold.batch.window"),
			row("fold.batch.window")+"\n| `fold.batch.max_age` | duration | `\"1s\"` | | not a key |", 1)
		expect(t, keyProblems(parseReference([]byte(extra)), keys),
			"fold.batch.max_age is documented but is not a key of the schema")
	})
	t.Run("missing and extra", func(t *testing.T) {
		both := strings.Replace(doc, "| `bucket.NAME.history` |", "| `bucket.NAME.histories` |", 1)
		expect(t, keyProblems(parseReference([]byte(both)), keys),
			"bucket.NAME.histories is documented but is not a key of the schema",
			"bucket.NAME.history (integer) is a key of the schema but is not documented")
	})
	t.Run("type", func(t *testing.T) {
		wrong := strings.Replace(doc, "| `fold.read_cache` | byte size |", "| `fold.read_cache` | integer |", 1)
		expect(t, keyProblems(parseReference([]byte(wrong)), keys),
			`fold.read_cache has type "integer" in the doc; the schema's is "byte size"`)
	})
	t.Run("default", func(t *testing.T) {
		wrong := strings.Replace(doc, "| `fold.batch.window` | duration | `\"10ms\"` |", "| `fold.batch.window` | duration | `\"20ms\"` |", 1)
		wrong = strings.Replace(wrong, "| `nats.name` | string | `\"slipstream\"` |", "| `nats.name` | string | slipstream |", 1)
		problems, err := defaultProblems(parseReference([]byte(wrong)), t.TempDir(), uncheckedDefaults)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, problems,
			`nats.name: default "slipstream" is not one backticked TOML value`,
			`fold.batch.window: the doc's default "20ms" loads as 20ms; the code's default is 10ms`)
	})
	t.Run("unchecked", func(t *testing.T) {
		more := map[string]string{"fold.bulk_load": "derived"}
		for k, v := range uncheckedDefaults {
			more[k] = v
		}
		problems, err := defaultProblems(parseReference([]byte(doc)), t.TempDir(), more)
		if err != nil {
			t.Fatal(err)
		}
		expect(t, problems, `fold.bulk_load: default "`+"`true`"+`"; want "derived"`)
	})
}
