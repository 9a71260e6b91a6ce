package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// quickstart is config.example.toml as shipped, moved to free ports and a
// temp data dir.
type quickstart struct {
	t          *testing.T
	bin        string
	config     string
	natsURL    string
	httpAddr   string
	cmd        *exec.Cmd
	stderr     *lockedBuffer
	exited     chan struct{}
	pluginPath string
}

func newQuickstart(t *testing.T) *quickstart {
	bin := testenv.Binary(t, "cmd/slipstream", "slipstream")
	plugin := testenv.SQLitePlugin(t)
	if filepath.Dir(plugin) != filepath.Dir(bin) {
		t.Fatalf("setup: plugin %s is not beside the binary %s", plugin, bin)
	}
	raw, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	natsPort, httpPort := freePort(t), freePort(t)
	keyfilter := filepath.Join(filepath.Dir(bin), "transforms", "keyfilter.wasm")
	if _, err := os.Stat(keyfilter); err != nil {
		keyfilter = testenv.GoWasm(t, "transforms/examples/keyfilter")
	}
	cfg := strings.NewReplacer(
		"127.0.0.1:4222", fmt.Sprintf("127.0.0.1:%d", natsPort),
		"127.0.0.1:7070", fmt.Sprintf("127.0.0.1:%d", httpPort),
		`"bin/transforms/keyfilter.wasm"`, strconv.Quote(keyfilter),
	).Replace(string(raw))
	if cfg == string(raw) || !strings.Contains(cfg, keyfilter) {
		t.Fatal("setup: the example config no longer has the addresses and module this test moves")
	}
	path := filepath.Join(dir, "slipstream.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return &quickstart{
		t: t, bin: bin, config: path, pluginPath: plugin,
		natsURL:  fmt.Sprintf("nats://127.0.0.1:%d", natsPort),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", httpPort),
	}
}

func (q *quickstart) start() {
	q.t.Helper()
	q.launch()
	testenv.Eventually(q.t, 60*time.Second, "readyz 200", func() bool {
		resp, err := http.Get("http://" + q.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// launch starts slipstream run on the quickstart's config, killed when the
// test ends, without waiting for it.
func (q *quickstart) launch() {
	q.t.Helper()
	q.cmd = exec.Command(q.bin, "run", "--config", q.config)
	q.stderr = &lockedBuffer{}
	q.cmd.Stderr = q.stderr
	if err := q.cmd.Start(); err != nil {
		q.t.Fatal(err)
	}
	q.exited = make(chan struct{})
	go func() { _ = q.cmd.Wait(); close(q.exited) }()
	q.t.Cleanup(func() {
		_ = q.cmd.Process.Kill()
		<-q.exited
		if q.t.Failed() {
			q.t.Logf("slipstream stderr:\n%s", q.stderr)
		}
	})
}

func (q *quickstart) cli(args ...string) string {
	q.t.Helper()
	out, err := exec.Command(q.bin, args...).CombinedOutput()
	if err != nil {
		q.t.Fatalf("slipstream %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// read GETs a key through the HTTP API, waiting for it to appear.
func (q *quickstart) read(key, want string) {
	q.t.Helper()
	var last string
	testenv.Eventually(q.t, 10*time.Second, fmt.Sprintf("GET %s = %q (last: %s)", key, want, last), func() bool {
		resp, err := http.Get("http://" + q.httpAddr + "/v1/folds/routes/keys/" + key)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		last = resp.Status + " " + string(body)
		return resp.StatusCode == http.StatusOK && string(body) == want && resp.Header.Get("Slipstream-Revision") != ""
	})
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		c, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(raw)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// TestQuickstart is the README: start config.example.toml with the embedded
// server, put a key with the CLI, read it back over HTTP.
func TestQuickstart(t *testing.T) {
	q := newQuickstart(t)
	q.start()
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.a", "hello")
	q.cli("kv", "--server", q.natsURL, "put", "config", "other.b", "not in scope")
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.db.secret", "hunter2")
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.z", "last")
	q.read("route.a", "hello")
	q.read("route.z", "last")
	resp, err := http.Get("http://" + q.httpAddr + "/v1/folds/routes/keys/other.b")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("out-of-scope key: %s, want 404", resp.Status)
	}
	resp, err = http.Get("http://" + q.httpAddr + "/v1/folds/routes/keys/route.db.secret")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("key denied by the example transform: %s, want 404", resp.Status)
	}
	if got := q.cli("kv", "--server", q.natsURL, "get", "config", "route.a"); got != "hello\n" {
		t.Errorf("kv get: %q", got)
	}
	status := q.cli("status", "--api", q.httpAddr)
	if !strings.Contains(status, "routes") || !strings.Contains(status, "synced") {
		t.Errorf("status:\n%s", status)
	}
	q.terminate()
}

// terminate sends the service SIGTERM and waits for a clean exit.
func (q *quickstart) terminate() {
	q.t.Helper()
	if err := q.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		q.t.Fatal(err)
	}
	select {
	case <-q.exited:
	case <-time.After(30 * time.Second):
		q.t.Fatal("slipstream did not exit on SIGTERM")
	}
	if code := q.cmd.ProcessState.ExitCode(); code != 0 {
		q.t.Errorf("exit code %d after SIGTERM", code)
	}
}

// TestHostKilled: SIGKILL the host; its plugin must not outlive it, and the
// next start resumes from the store's cursor.
func TestHostKilled(t *testing.T) {
	q := newQuickstart(t)
	q.start()
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.a", "one")
	q.read("route.a", "one")
	plugins := children(q.cmd.Process.Pid)
	if len(plugins) == 0 {
		t.Fatal("setup: the host has no plugin process")
	}
	if err := q.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-q.exited
	testenv.Eventually(t, 10*time.Second, "plugins to exit after their host died", func() bool {
		for _, pid := range plugins {
			if testenv.Alive(pid) {
				return false
			}
		}
		return true
	})
	q.start()
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.b", "two")
	q.read("route.a", "one")
	q.read("route.b", "two")
	// Resumed, not re-listed: the second run's first watch starts at a cursor.
	if !resumedFromCursor(q.stderr.String()) {
		t.Errorf("the restart did not resume from the store's cursor:\n%s", q.stderr)
	}
	if out := q.cli("verify", "--api", q.httpAddr, "routes"); !strings.Contains(out, "0 stale, 0 missing, 0 changed") {
		t.Errorf("verify after the restart:\n%s", out)
	}
}

// TestVerifyTamperedFold: verify exits 1 and names the keys of a fold
// edited behind slipstream's back; reconcile repairs it.
func TestVerifyTamperedFold(t *testing.T) {
	q := newQuickstart(t)
	q.start()
	for _, k := range []string{"route.a", "route.b", "route.c"} {
		q.cli("kv", "--server", q.natsURL, "put", "config", k, "v")
	}
	q.read("route.c", "v")
	if err := q.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-q.exited
	db, err := sql.Open("sqlite3", filepath.Join(filepath.Dir(q.config), "data", "folds", "routes", "gen-000001", "fold.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM kv WHERE key = CAST('route.b' AS BLOB)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	q.start()
	out, err := exec.Command(q.bin, "verify", "--api", q.httpAddr, "routes").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "missing  route.b") {
		t.Fatalf("verify of a tampered fold: exit %d\n%s", code, out)
	}
	q.cli("reconcile", "--api", q.httpAddr, "routes")
	testenv.Eventually(t, 10*time.Second, "verify to pass after the reconcile", func() bool {
		return exec.Command(q.bin, "verify", "--api", q.httpAddr, "routes").Run() == nil
	})
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func resumedFromCursor(log string) bool {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"msg":"watching"`) {
			return strings.Contains(line, `"generation":1`) && !strings.Contains(line, `"cursor":0,`)
		}
	}
	return false
}

// lockedBuffer collects a child process's output while the test reads
// it: os/exec writes from a goroutine of its own.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
