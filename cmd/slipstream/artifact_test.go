package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportImport is the artifact commands as the README shows them:
// export a running fold to a file, inspect it, refuse an import while the
// service runs, then fill the fold from the file with the service stopped
// and start it again from the artifact's cursor.
func TestExportImport(t *testing.T) {
	q := newQuickstart(t)
	q.start()
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.a", "hello")
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.b", "world")
	q.read("route.b", "world")
	file := filepath.Join(t.TempDir(), "routes.slipsnap")
	out := q.cli("export", "--api", q.httpAddr, "--to", file, "routes")
	if !strings.Contains(out, "2 records at cursor") {
		t.Errorf("export: %q", out)
	}
	inspect := q.cli("artifact", "inspect", file)
	for _, want := range []string{"bucket           config", "scope            route.>", "records          2", "(verified)"} {
		if !strings.Contains(inspect, want) {
			t.Errorf("inspect lacks %q:\n%s", want, inspect)
		}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.slipsnap")
	if err := os.WriteFile(bad, raw[:len(raw)-5], 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(q.bin, "artifact", "inspect", bad).CombinedOutput(); exitCode(err) != 1 || !strings.Contains(string(out), "truncated") {
		t.Errorf("inspect of a truncated artifact: exit %d, %s", exitCode(err), out)
	}
	if out, err := exec.Command(q.bin, "import", "--config", q.config, "--fold", "routes", "--from", file).CombinedOutput(); exitCode(err) != 1 {
		t.Errorf("import while the service runs: exit %d, %s", exitCode(err), out)
	}

	q.terminate()
	q.removeFold()
	out = q.cli("import", "--config", q.config, "--fold", "routes", "--from", file)
	if !strings.Contains(out, "imported 2 records") {
		t.Errorf("import: %q", out)
	}
	q.start()
	q.read("route.a", "hello")
	q.read("route.b", "world")
	if strings.Contains(q.stderr.String(), "rebuilding fold") {
		t.Errorf("the imported fold was rebuilt:\n%s", q.stderr)
	}

	// bootstrap_from: a fold that starts empty fills itself from the file.
	q.terminate()
	q.removeFold()
	q.bootstrapFrom(file)
	q.start()
	q.read("route.a", "hello")
	if !strings.Contains(q.stderr.String(), "imported an artifact") {
		t.Errorf("the fold did not bootstrap from its artifact:\n%s", q.stderr)
	}
}

// TestSeries is the same through a NATS Object Store series: export
// publishes to it (again at the same cursor changes nothing), inspect reads
// it, import and bootstrap_from fill a fold from it.
func TestSeries(t *testing.T) {
	q := newQuickstart(t)
	q.start()
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.a", "hello")
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.b", "world")
	q.read("route.b", "world")
	const series = "nats-object://snaps/routes"
	if out, err := exec.Command(q.bin, "artifact", "inspect", "--server", q.natsURL, series).CombinedOutput(); exitCode(err) != 1 || !strings.Contains(string(out), "no artifact") {
		t.Errorf("inspect of a series never published: exit %d, %s", exitCode(err), out)
	}
	first := q.cli("export", "--api", q.httpAddr, "--to", series, "routes")
	if !strings.Contains(first, "published routes/") || !strings.Contains(first, "2 records at cursor") {
		t.Errorf("export to a series: %q", first)
	}
	if again := q.cli("export", "--api", q.httpAddr, "--to", series, "routes"); again != first {
		t.Errorf("a second export at the same cursor published something else:\n%s\nafter\n%s", again, first)
	}
	inspect := q.cli("artifact", "inspect", "--server", q.natsURL, series)
	for _, want := range []string{"series           " + series, "bucket           config", "records          2", "(verified)"} {
		if !strings.Contains(inspect, want) {
			t.Errorf("inspect lacks %q:\n%s", want, inspect)
		}
	}
	if out, err := exec.Command(q.bin, "export", "--api", q.httpAddr, "--to", "nats-object://snaps/a/b", "routes").CombinedOutput(); exitCode(err) != 2 {
		t.Errorf("export to a bad series URL: exit %d, %s", exitCode(err), out)
	}

	q.terminate()
	q.removeFold()
	if out := q.cli("import", "--config", q.config, "--fold", "routes", "--from", series); !strings.Contains(out, "imported 2 records") {
		t.Errorf("import from a series: %q", out)
	}
	q.start()
	q.read("route.a", "hello")
	q.read("route.b", "world")

	q.terminate()
	q.removeFold()
	q.bootstrapFrom(series)
	q.start()
	q.read("route.a", "hello")
	if !strings.Contains(q.stderr.String(), "opening an artifact of a series") || !strings.Contains(q.stderr.String(), "imported an artifact") {
		t.Errorf("the fold did not bootstrap from the series:\n%s", q.stderr)
	}
}

// removeFold removes the example's fold, with the service stopped.
func (q *quickstart) removeFold() {
	q.t.Helper()
	if err := os.RemoveAll(filepath.Join(filepath.Dir(q.config), "data", "folds", "routes")); err != nil {
		q.t.Fatal(err)
	}
}

// bootstrapFrom sets the example fold's bootstrap_from to src.
func (q *quickstart) bootstrapFrom(src string) {
	q.t.Helper()
	cfg, err := os.ReadFile(q.config)
	if err != nil {
		q.t.Fatal(err)
	}
	edited := strings.Replace(string(cfg), "\nstore = ", fmt.Sprintf("\nbootstrap_from = %q\nstore = ", src), 1)
	if edited == string(cfg) {
		q.t.Fatal("setup: the example config has no store line to put bootstrap_from before")
	}
	if err := os.WriteFile(q.config, []byte(edited), 0o644); err != nil {
		q.t.Fatal(err)
	}
}
