// Package testenv gives integration tests real parts: an in-process NATS
// server with JetStream, and plugin and CLI binaries built from source.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS starts an in-process server with JetStream on a free loopback port,
// stored under a temp dir; it stops when the test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	return NATSAt(t, t.TempDir(), -1)
}

// NATSAt starts a server storing in dir on port (-1: any free port).
func NATSAt(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
		MaxPayload: 8 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// JetStream connects to s.
func JetStream(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Bucket creates a KV bucket.
func Bucket(t testing.TB, js jetstream.JetStream, cfg jetstream.KeyValueConfig) jetstream.KeyValue {
	t.Helper()
	kv, err := js.CreateKeyValue(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// Fataler is the part of testing.TB (and rapid.T) the helpers need.
type Fataler interface {
	Helper()
	Fatal(args ...any)
}

// Contents reads the live keys of a bucket (filtered by key prefix when set).
func Contents(t Fataler, kv jetstream.KeyValue, prefix string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	out := map[string]string{}
	for e := range w.Updates() {
		if e == nil {
			return out
		}
		if strings.HasPrefix(e.Key(), prefix) {
			out[e.Key()] = string(e.Value())
		}
	}
	t.Fatal("watch closed before the initial values were done")
	return nil
}

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// root is the module root, found from this file's location.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Binary returns the path of a binary built from the package at pkg (a path
// relative to the module root, like "plugins/sqlite") named name. When
// SLIPSTREAM_BIN names a directory holding it (make test builds them
// first), that one is used.
func Binary(t testing.TB, pkg, name string) string {
	t.Helper()
	if dir := os.Getenv("SLIPSTREAM_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return buildOnce(t, name, func(out string) *exec.Cmd { return exec.Command("go", "build", "-o", out, "./"+pkg) })
}

// SQLitePlugin is the SQLite store plugin binary.
func SQLitePlugin(t testing.TB) string {
	return Binary(t, "plugins/sqlite", "slipstream-store-sqlite")
}

// Main runs the tests and removes what Binary built.
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}

// Eventually polls cond until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Alive reports whether process pid exists and is not a zombie.
func Alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// GoWasm builds the Go transform guest at pkg (relative to the module root)
// into a .wasm file, as make transforms does.
func GoWasm(t testing.TB, pkg string) string {
	t.Helper()
	return buildOnce(t, pkg+".wasm", func(out string) *exec.Cmd {
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w", "-o", out, "./"+pkg)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		return cmd
	})
}

// WatWasm assembles the WAT module at path (relative to the module root)
// with wat2wasm (make wabt installs it).
func WatWasm(t testing.TB, path string) string {
	t.Helper()
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Fatalf("wat2wasm is not installed (make wabt): %v", err)
	}
	return buildOnce(t, path+".wasm", func(out string) *exec.Cmd {
		return exec.Command("wat2wasm", "-o", out, path)
	})
}

// buildOnce runs the command cmd(out) once per name per test binary.
func buildOnce(t testing.TB, name string, cmd func(out string) *exec.Cmd) string {
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "slipstream-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, strings.NewReplacer("/", "_").Replace(name))
	c := cmd(out)
	c.Dir = root()
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	built[name] = out
	return out
}

// ExternalNATS starts the real nats-server binary (make tools installs it
// under .cache/tools) with JetStream on a free loopback port, for tests and
// benchmarks that must kill the server or keep its memory out of their own
// process. It returns the client URL.
func ExternalNATS(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = filepath.Join(root(), ".cache", "tools", "nats-server")
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("nats-server binary not found on PATH or in .cache/tools (run make tools)")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := nats.Connect(url)
		if err == nil {
			nc.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ProcessCPU is the CPU time, user and system, this process has used so
// far (0 if the system will not say): benchmarks report it per operation.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
