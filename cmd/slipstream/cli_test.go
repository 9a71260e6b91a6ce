package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// cliRun is one run of the slipstream binary.
type cliRun struct {
	stdout, stderr string
	code           int
}

// runBin runs the binary with args and stdin, and returns what it printed
// and its exit code. It fails the test if the binary does not exit within
// a minute.
func runBin(t *testing.T, bin, stdin string, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return cliRun{out.String(), errOut.String(), exitCode(err)}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("slipstream %s did not exit within a minute", strings.Join(args, " "))
	}
	return cliRun{}
}

// verbs are every verb's path and the arguments its Use names.
var verbs = []struct {
	path []string
	use  string // what --help's usage line shows after "slipstream "
}{
	{[]string{"run"}, "run --config FILE"},
	{[]string{"validate"}, "validate [--config] FILE"},
	{[]string{"status"}, "status [FOLD]"},
	{[]string{"get"}, "get FOLD KEY"},
	{[]string{"scan"}, "scan FOLD"},
	{[]string{"watch"}, "watch FOLD"},
	{[]string{"verify"}, "verify FOLD"},
	{[]string{"reconcile"}, "reconcile FOLD"},
	{[]string{"export"}, "export FOLD --to PATH|nats-object://BUCKET/NAME"},
	{[]string{"import"}, "import --config FILE --fold NAME --from PATH|URL|nats-object://BUCKET/NAME"},
	{[]string{"artifact"}, "artifact inspect PATH|URL|nats-object://BUCKET/NAME"},
	{[]string{"artifact", "inspect"}, "artifact inspect PATH|URL|nats-object://BUCKET/NAME"},
	{[]string{"kv"}, "kv put|get|del|ls BUCKET [KEY [VALUE]]"},
	{[]string{"kv", "put"}, "kv put BUCKET KEY VALUE|-"},
	{[]string{"kv", "get"}, "kv get BUCKET KEY"},
	{[]string{"kv", "del"}, "kv del BUCKET KEY"},
	{[]string{"kv", "ls"}, "kv ls BUCKET"},
	{[]string{"conformance"}, "conformance --plugin PATH"},
	{[]string{"version"}, "version"},
	{[]string{"completion"}, "completion bash|zsh|fish|powershell"},
}

// TestCLIHelpAndUsageErrors: every verb's --help exits 0 with its
// arguments and examples; an unknown flag, after the arguments, exits 2
// with one usage message; so do a missing argument and an unknown verb.
// The completion scripts are written; version and a failed conformance
// run print JSON that parses.
func TestCLIHelpAndUsageErrors(t *testing.T) {
	bin := testenv.Binary(t, "cmd/slipstream", "slipstream")
	for _, v := range verbs {
		name := strings.Join(v.path, " ")
		help := runBin(t, bin, "", append(v.path, "--help")...)
		if help.code != 0 || !strings.Contains(help.stdout, "slipstream "+v.use) || !strings.Contains(help.stdout, "Examples:\n  slipstream "+v.path[0]) {
			t.Errorf("slipstream %s --help: exit %d, want 0 with %q and examples\n%s%s", name, help.code, "slipstream "+v.use, help.stdout, help.stderr)
		}
		if h := runBin(t, bin, "", append([]string{"help"}, v.path...)...); h.code != 0 || h.stdout != help.stdout {
			t.Errorf("slipstream help %s: exit %d, not the same as --help\n%s", name, h.code, h.stdout)
		}
		bad := runBin(t, bin, "", append(v.path, "ARG", "--bogus")...)
		if bad.code != 2 || bad.stdout != "" || !strings.Contains(bad.stderr, "unknown flag: --bogus") || usages(bad.stderr) != 1 {
			t.Errorf("slipstream %s ARG --bogus: exit %d, want 2 with one usage message on stderr\nstdout: %s\nstderr: %s", name, bad.code, bad.stdout, bad.stderr)
		}
	}
	for _, args := range [][]string{
		{},                               // no verb
		{"statu"},                        // no such verb
		{"scan"},                         // no fold
		{"get", "routes"},                // no key
		{"kv", "frob", "config"},         // no such operation
		{"kv", "put", "config", "route"}, // no value
		{"artifact"},                     // no operation
		{"version", "extra"},             // an argument too many
		{"scan", "routes", "--limit", "x"},
		{"run"},                // no --config
		{"completion"},         // no shell
		{"completion", "tcsh"}, // not a shell it knows
		{"scan", "-prefix=x"},  // a single-dash long flag still needs its verb's arguments
	} {
		r := runBin(t, bin, "", args...)
		if r.code != 2 || r.stdout != "" || usages(r.stderr) != 1 {
			t.Errorf("slipstream %s: exit %d, want 2 with one usage message on stderr\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	if r := runBin(t, bin, "", "statu"); !strings.Contains(r.stderr, "did you mean status?") {
		t.Errorf("no suggestion for statu:\n%s", r.stderr)
	}

	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		r := runBin(t, bin, "", "completion", shell)
		if r.code != 0 || len(r.stdout) < 1000 || !strings.Contains(r.stdout, "slipstream") {
			t.Errorf("completion %s: exit %d, %d bytes\n%s", shell, r.code, len(r.stdout), r.stderr)
		}
	}
	// The shells ask the binary itself: verbs, then kv's operations.
	if r := runBin(t, bin, "", "__complete", "sc"); r.code != 0 || !strings.Contains(r.stdout, "scan\t") {
		t.Errorf("completing sc: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, bin, "", "__complete", "kv", ""); r.code != 0 || !strings.Contains(r.stdout, "put\t") || !strings.Contains(r.stdout, "ls\t") {
		t.Errorf("completing kv: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r := runBin(t, bin, "", "version", "--json")
	var ver struct{ Version, Go string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ver) != nil || ver.Version == "" || ver.Go == "" {
		t.Errorf("version --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, bin, "", "conformance", "--json", "--plugin", filepath.Join(t.TempDir(), "nope"))
	var conf conformanceResult
	if err := json.Unmarshal([]byte(r.stdout), &conf); r.code != 1 || err != nil || conf.Failed != 1 || len(conf.Cases) != 1 || conf.Cases[0].Name != "start" {
		t.Errorf("conformance --json of a missing plugin: exit %d, %v, %+v\n%s%s", r.code, err, conf, r.stdout, r.stderr)
	}
}

// usages counts the lines of s that start "usage:".
func usages(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.ToLower(l), "usage:") || strings.Contains(strings.ToLower(l), ": usage:") {
			n++
		}
	}
	return n
}

// TestCLIFlagsAfterArguments drives every verb of the real binary against
// the quickstart with its flags after its arguments, and with --json where
// the verb prints data: each exits 0 and its output parses (one document,
// or JSON Lines for scan, kv ls and watch). Scan's table quotes a value
// that holds a tab.
func TestCLIFlagsAfterArguments(t *testing.T) {
	q := newQuickstart(t)
	bin := q.bin
	// validate, before the service runs: the file as an argument, a flag after.
	var valid struct {
		Config string   `json:"config"`
		Valid  bool     `json:"valid"`
		Folds  []string `json:"folds"`
	}
	mustJSON(t, runOK(t, bin, "", "validate", q.config, "--json"), &valid)
	if !valid.Valid || len(valid.Folds) != 1 || valid.Folds[0] != "routes" {
		t.Errorf("validate --json: %+v", valid)
	}
	// A single-dash long flag, as the standard flag package took them.
	if out := runOK(t, bin, "", "validate", "-config", q.config); !strings.Contains(out, "ok (1 folds)") {
		t.Errorf("validate -config: %q", out)
	}
	q.start()
	api, srv := q.httpAddr, q.natsURL

	var put struct {
		Bucket, Key string
		Revision    uint64
	}
	mustJSON(t, runOK(t, bin, "", "kv", "put", "config", "route.a", "hello", "--server", srv, "--json"), &put)
	if put.Bucket != "config" || put.Key != "route.a" || put.Revision == 0 {
		t.Errorf("kv put --json: %+v", put)
	}
	runOK(t, bin, "", "kv", "put", "config", "route.tab", "a\tb", "--server", srv)
	runOK(t, bin, "from stdin\n", "kv", "put", "config", "route.stdin", "-", "--server", srv)
	runOK(t, bin, "", "kv", "put", "config", "route.neg", "--server", srv, "--", "-1")
	runOK(t, bin, "", "kv", "--server", srv, "--create", "put", "other", "x", "y") // flags before the operation
	runOK(t, bin, "", "kv", "put", "config", "route.gone", "x", "--server", srv)
	runOK(t, bin, "", "kv", "del", "config", "route.gone", "--server", srv)
	q.read("route.neg", "-1")
	q.read("route.stdin", "from stdin\n")

	var kvGet struct {
		Key, Value string
		Revision   uint64
		Created    time.Time
	}
	mustJSON(t, runOK(t, bin, "", "kv", "get", "config", "route.a", "--server", srv, "--json"), &kvGet)
	if kvGet.Key != "route.a" || kvGet.Value != "hello" || kvGet.Revision != put.Revision || kvGet.Created.IsZero() {
		t.Errorf("kv get --json: %+v", kvGet)
	}
	var keys []string
	for _, l := range jsonLines(t, runOK(t, bin, "", "kv", "ls", "config", "--server", srv, "--json")) {
		var k struct{ Key string }
		mustJSON(t, l, &k)
		keys = append(keys, k.Key)
	}
	if len(keys) != 4 {
		t.Errorf("kv ls --json: %v, want the 4 live keys", keys)
	}
	var del struct {
		Key     string
		Deleted bool
	}
	mustJSON(t, runOK(t, bin, "", "kv", "del", "config", "route.none", "--server", srv, "--json"), &del)
	if del.Key != "route.none" || !del.Deleted {
		t.Errorf("kv del --json: %+v", del)
	}

	var status struct {
		Name, State string
		Cursor      uint64
	}
	mustJSON(t, runOK(t, bin, "", "status", "routes", "--api", api, "--json"), &status)
	if status.Name != "routes" || status.State == "" {
		t.Errorf("status FOLD --json: %+v", status)
	}
	var all struct{ Folds []json.RawMessage }
	mustJSON(t, runOK(t, bin, "", "status", "--api", api, "--json"), &all)
	if len(all.Folds) != 1 {
		t.Errorf("status --json: %d folds", len(all.Folds))
	}
	if out := runOK(t, bin, "", "get", "routes", "route.a", "--api", api); out != "hello" {
		t.Errorf("get: %q", out)
	}
	var got struct {
		Key, Value, Position string
		Revision             uint64
	}
	mustJSON(t, runOK(t, bin, "", "get", "routes", "route.a", "--api", api, "--json"), &got)
	if got.Key != "route.a" || got.Value != "hello" || got.Revision != put.Revision || !strings.HasPrefix(got.Position, "1.") {
		t.Errorf("get --json: %+v", got)
	}

	// scan: the README's own line, JSON Lines, and the table.
	if out := runOK(t, bin, "", "scan", "routes", "--prefix", "route.n", "--api", api); !strings.Contains(out, "route.neg") || strings.Contains(out, "route.a ") {
		t.Errorf("scan routes --prefix route.n:\n%s", out)
	}
	lines := jsonLines(t, runOK(t, bin, "", "scan", "routes", "--prefix", "route.", "--api", api, "--json"))
	values := map[string]string{}
	var scanAt string
	for _, l := range lines {
		var e struct{ Key, Value, Position string }
		mustJSON(t, l, &e)
		values[e.Key], scanAt = e.Value, e.Position
	}
	if len(values) != 4 || values["route.tab"] != "a\tb" || values["route.stdin"] != "from stdin\n" || values["route.neg"] != "-1" || scanAt == "" {
		t.Errorf("scan --json: %v at %q", values, scanAt)
	}
	if n := len(jsonLines(t, runOK(t, bin, "", "scan", "routes", "--limit", "2", "--api", api, "--json"))); n != 2 {
		t.Errorf("scan --limit 2 --json: %d lines", n)
	}
	table := runOK(t, bin, "", "scan", "routes", "--api", api)
	rows := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(rows) != 5 || !strings.HasPrefix(rows[0], "KEY") || strings.Contains(table, "\t") ||
		!strings.Contains(table, `"a\tb"`) || !strings.Contains(table, `"from stdin\n"`) {
		t.Errorf("scan's table: a header, 4 rows, no raw tab or newline in a value:\n%s", table)
	}

	var v struct {
		Diverged bool
		Summary  struct {
			BucketKeys int `json:"bucket_keys"`
		}
	}
	mustJSON(t, runOK(t, bin, "", "verify", "routes", "--api", api, "--json"), &v)
	if v.Diverged {
		t.Errorf("verify --json: %+v", v)
	}

	// Completion asks the service at --api for its folds, and get for keys.
	if out := runOK(t, bin, "", "__complete", "scan", "--api", api, ""); !strings.Contains(out, "routes\n") {
		t.Errorf("completing scan's fold:\n%s", out)
	}
	if out := runOK(t, bin, "", "__complete", "get", "--api", api, "routes", "route.t"); !strings.Contains(out, "route.tab\n") || strings.Contains(out, "route.a\n") {
		t.Errorf("completing get's key:\n%s", out)
	}

	// watch: flags after the fold, from the scan's position; a put after
	// it arrives as a JSON line.
	w := q.watch("routes", "--from", scanAt, "--json", "--prefix", "route.")
	runOK(t, bin, "", "kv", "put", "config", "route.w", "watched", "--server", srv)
	var change struct{ Op, Key, Value, Position string }
	mustJSON(t, w.line(w.stdout, "a JSON line"), &change)
	if change.Op != "put" || change.Key != "route.w" || change.Value != "watched" || change.Position == "" {
		t.Errorf("watch --json: %+v", change)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "routes.slipsnap")
	var exp struct {
		Fold, To string
		Manifest struct{ Records, Cursor uint64 }
	}
	mustJSON(t, runOK(t, bin, "", "export", "routes", "--to", file, "--api", api, "--json"), &exp)
	if exp.Fold != "routes" || exp.To != file || exp.Manifest.Records != 5 {
		t.Errorf("export --json: %+v", exp)
	}
	var pub struct {
		To      string
		Pointer struct {
			Object  string
			Records uint64
		}
	}
	const series = "nats-object://snaps/routes"
	mustJSON(t, runOK(t, bin, "", "export", "routes", "--to", series, "--api", api, "--json"), &pub)
	if pub.To != series || pub.Pointer.Object == "" || pub.Pointer.Records != 5 {
		t.Errorf("export to a series --json: %+v", pub)
	}
	var m struct {
		Bucket  string
		Records uint64
	}
	mustJSON(t, runOK(t, bin, "", "artifact", "inspect", file, "--json"), &m)
	if m.Bucket != "config" || m.Records != 5 {
		t.Errorf("artifact inspect --json: %+v", m)
	}
	mustJSON(t, runOK(t, bin, "", "artifact", "inspect", series, "--server", srv, "--json"), &m)
	if m.Records != 5 {
		t.Errorf("artifact inspect SERIES --json: %+v", m)
	}

	// Last, as a fold with transforms is rebuilt for it (a new generation).
	var rec struct {
		Fold      string
		Requested bool
	}
	mustJSON(t, runOK(t, bin, "", "reconcile", "routes", "--api", api, "--json"), &rec)
	if rec.Fold != "routes" || !rec.Requested {
		t.Errorf("reconcile --json: %+v", rec)
	}

	q.terminate()
	q.removeFold()
	var imp struct {
		Fold     string
		Manifest struct{ Records uint64 }
	}
	mustJSON(t, runOK(t, bin, "", "import", "--config", q.config, "--fold", "routes", "--from", file, "--json"), &imp)
	if imp.Fold != "routes" || imp.Manifest.Records != 5 {
		t.Errorf("import --json: %+v", imp)
	}
}

// runOK runs the binary and fails the test unless it exits 0; it returns
// stdout.
func runOK(t *testing.T, bin, stdin string, args ...string) string {
	t.Helper()
	r := runBin(t, bin, stdin, args...)
	if r.code != 0 {
		t.Fatalf("slipstream %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// mustJSON decodes one JSON document, all of s.
func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", s)
	}
}

// jsonLines splits JSON Lines, checking that each line is one object.
func jsonLines(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "{") || !json.Valid([]byte(l)) {
			t.Fatalf("not a JSON line: %q\n%s", l, s)
		}
		out = append(out, l)
	}
	return out
}

// TestConformanceSummary reads conformance.RunCLI's report as --json
// shows it.
func TestConformanceSummary(t *testing.T) {
	text := `conformance of bin/x: sqlite 1.0, capabilities: bulk
PASS  apply/basic (12ms)
FAIL  cursor/atomic (3ms)
      cursor moved without its batch
      second failure
      catches: a store that commits the cursor apart
      log: plugin said
      more of the log
SKIP  bulk/load: the store declares no bulk load
1 passed, 1 failed
`
	r := conformanceSummary("bin/x", text)
	want := conformanceResult{Plugin: "bin/x", Store: "sqlite 1.0, capabilities: bulk", Passed: 1, Failed: 1, Skipped: 1, Cases: []conformanceCase{
		{Name: "apply/basic", Result: "pass", Elapsed: "12ms"},
		{Name: "cursor/atomic", Result: "fail", Elapsed: "3ms", Failures: []string{"cursor moved without its batch", "second failure"},
			Catches: "a store that commits the cursor apart", Logs: []string{"plugin said\nmore of the log"}},
		{Name: "bulk/load", Result: "skip", Reason: "the store declares no bulk load"},
	}}
	gotJSON, _ := json.Marshal(r)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("summary:\n%s\nwant\n%s", gotJSON, wantJSON)
	}
	if s := conformanceSummary("p", "FAIL  start: start p: no such file\n0 passed, 1 failed\n"); s.Failed != 1 || s.Cases[0].Name != "start" || len(s.Cases[0].Failures) != 1 {
		t.Errorf("a failure to start: %+v", s)
	}
}

// TestShowValue: the people's form of values and keys is unambiguous.
func TestShowValue(t *testing.T) {
	for in, want := range map[string]string{
		"hello world":  "hello world",
		"a\tb":         `"a\tb"`,
		"line\n":       `"line\n"`,
		`"quoted"`:     `"\"quoted\""`,
		"(binary 3 b)": `"(binary 3 b)"`,
		" padded":      `" padded"`,
		"":             `""`,
		"\xff\xfe":     "(binary 2 bytes)",
	} {
		if got := showValue([]byte(in)); got != want {
			t.Errorf("showValue(%q) = %s, want %s", in, got, want)
		}
	}
	if got := showKey("a b"); got != `"a b"` {
		t.Errorf("showKey: %s", got)
	}
}
