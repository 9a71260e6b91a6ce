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
	if err := os.RemoveAll(filepath.Join(filepath.Dir(q.config), "data", "folds", "routes")); err != nil {
		t.Fatal(err)
	}
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
	if err := os.RemoveAll(filepath.Join(filepath.Dir(q.config), "data", "folds", "routes")); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(q.config)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(cfg), "\nstore = ", fmt.Sprintf("\nbootstrap_from = %q\nstore = ", file), 1)
	if edited == string(cfg) {
		t.Fatal("setup: the example config has no store line to put bootstrap_from before")
	}
	if err := os.WriteFile(q.config, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	q.start()
	q.read("route.a", "hello")
	if !strings.Contains(q.stderr.String(), "imported an artifact") {
		t.Errorf("the fold did not bootstrap from its artifact:\n%s", q.stderr)
	}
}
