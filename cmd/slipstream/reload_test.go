package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// TestReload: SIGHUP applies a config with one more fold, while the
// example's fold goes on; `slipstream reload` refuses a fold whose plugin
// would refuse its store_config, exit 1, and nothing changes; `validate`
// refuses that file too, and passes it with --offline.
func TestReload(t *testing.T) {
	q := newQuickstart(t)
	q.start()
	q.cli("kv", "put", "config", "route.a", "hello", "--server", q.natsURL)
	q.cli("kv", "put", "config", "users.x", "1", "--server", q.natsURL)
	q.read("route.a", "hello")
	orig, err := os.ReadFile(q.config)
	if err != nil {
		t.Fatal(err)
	}
	extra := "\n[[fold]]\nname = \"users\"\nbucket = \"config\"\nscope = [\"users.>\"]\nstore = \"sqlite\"\n"
	if err := os.WriteFile(q.config, append(append([]byte{}, orig...), extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := q.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	folds := func() []string {
		var st struct {
			Folds []struct{ Name string } `json:"folds"`
		}
		out, err := exec.Command(q.bin, "status", "--api", q.httpAddr, "--json").Output()
		if err != nil || json.Unmarshal(out, &st) != nil {
			return nil
		}
		var names []string
		for _, f := range st.Folds {
			names = append(names, f.Name)
		}
		return names
	}
	testenv.Eventually(t, 20*time.Second, "the fold SIGHUP added", func() bool {
		return strings.Join(folds(), ",") == "routes,users"
	})
	q.read("route.a", "hello")

	bad := strings.Replace(string(orig)+extra, "name = \"users\"", "name = \"users\"\nstore_config = { nope = 1 }", 1)
	if err := os.WriteFile(q.config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(q.bin, "reload", "--api", q.httpAddr).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "nope") {
		t.Errorf("reload of a store_config the plugin refuses: exit %d\n%s", exitCode(err), out)
	}
	if got := strings.Join(folds(), ","); got != "routes,users" {
		t.Errorf("a refused reload changed the folds: %s", got)
	}
	out, err = exec.Command(q.bin, "validate", q.config).CombinedOutput()
	if exitCode(err) != 2 || !strings.Contains(string(out), "nope") {
		t.Errorf("validate of a store_config the plugin refuses: exit %d\n%s", exitCode(err), out)
	}
	if out, err := exec.Command(q.bin, "validate", q.config, "--offline").CombinedOutput(); err != nil {
		t.Errorf("validate --offline: %v\n%s", err, out)
	}
}
