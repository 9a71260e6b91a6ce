package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// goTrace matches what the Go runtime prints for a panic or a fatal error:
// the panic line, a goroutine header or a stack frame.
var goTrace = regexp.MustCompile(`(?m)^panic: |^fatal error: |^goroutine \d+ \[|^\s+\S+\.go:\d+ \+0x|\[signal SIG`)

// startFailure is what one failed `slipstream run` printed and returned.
type startFailure struct {
	code   int
	output string
	took   time.Duration
}

// runUntilExit runs `slipstream run --config cfg` and waits for it to exit
// on its own within limit. interrupt, when set, sends SIGINT after that
// long.
func runUntilExit(t *testing.T, cfg string, limit, interrupt time.Duration) startFailure {
	t.Helper()
	bin := testenv.Binary(t, "cmd/slipstream", "slipstream")
	cmd := exec.Command(bin, "run", "--config", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var sigint <-chan time.Time
	if interrupt > 0 {
		sigint = time.After(interrupt)
	}
	for {
		select {
		case <-sigint:
			_ = cmd.Process.Signal(syscall.SIGINT)
			sigint = nil
			continue
		case <-done:
		case <-time.After(limit):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("slipstream run did not exit within %s; output:\n%s", limit, out.String())
		}
		break
	}
	return startFailure{code: cmd.ProcessState.ExitCode(), output: out.String(), took: time.Since(start)}
}

// writeConfig writes a config file from a template whose DATA, PLUGINS,
// NATS_PORT and HTTP_PORT are replaced, and returns its path.
func writeConfig(t *testing.T, tmpl string, natsPort, httpPort int) string {
	t.Helper()
	dir := t.TempDir()
	plugins := filepath.Dir(testenv.SQLitePlugin(t))
	cfg := strings.NewReplacer(
		"DATA", filepath.Join(dir, "data"),
		"PLUGINS", plugins,
		"NATS_PORT", fmt.Sprint(natsPort),
		"HTTP_PORT", fmt.Sprint(httpPort),
	).Replace(tmpl)
	path := filepath.Join(dir, "slipstream.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// holdPort listens on a free loopback port until the test ends.
func holdPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// silentServer accepts connections and never says a word, as a wedged
// server or a firewall that swallows the handshake would.
func silentServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// remoteBase is a config connecting to a server at NATS_PORT; oneFold is
// the fold most cases run.
const (
	remoteBase = `
data_dir = "DATA"
[nats]
url = "nats://127.0.0.1:NATS_PORT"
`
	oneFold = `
[[fold]]
name = "r"
bucket = "config"
store = "sqlite"
`
)

const embeddedBase = `
data_dir = "DATA"
plugin_dir = "PLUGINS"
[nats]
listen = "127.0.0.1:NATS_PORT"
[http]
listen = "127.0.0.1:HTTP_PORT"
[bucket.config]
history = 1
`

// TestStartupFailures drives the real binary into each mistake an operator
// makes on the first day. Each must end promptly with exit code 1 (2 for a
// config error), a message naming what failed, and no Go panic or trace.
func TestStartupFailures(t *testing.T) {
	keyfilter := testenv.GoWasm(t, "transforms/examples/keyfilter")
	tests := []struct {
		name string
		// config returns the config file to run.
		config    func(t *testing.T) string
		interrupt time.Duration
		code      int
		want      []string // substrings of the output
	}{
		{
			name: "no server at the NATS URL",
			config: func(t *testing.T) string {
				return writeConfig(t, remoteBase+"[http]\nlisten = \"off\"\n"+oneFold, freePort(t), 0)
			},
			code: exitFailure,
			want: []string{"nats: connect nats://127.0.0.1:", "connection refused"},
		},
		{
			name: "a server that never answers, interrupted",
			config: func(t *testing.T) string {
				return writeConfig(t, remoteBase+"connect_timeout = \"60s\"\n[http]\nlisten = \"off\"\n"+oneFold, silentServer(t), 0)
			},
			interrupt: 500 * time.Millisecond,
			code:      exitFailure,
			want:      []string{"interrupted while starting", "nats: connect nats://127.0.0.1:"},
		},
		{
			name: "a store with no plugin",
			config: func(t *testing.T) string {
				return writeConfig(t, embeddedBase+`
[[fold]]
name = "r"
bucket = "config"
store = "nope"
`, freePort(t), freePort(t))
			},
			code: exitFailure,
			want: []string{`fold r: store plugin "nope" not found`, "slipstream-store-nope"},
		},
		{
			name: "a transform config the module refuses",
			config: func(t *testing.T) string {
				return writeConfig(t, embeddedBase+`
[[fold]]
name = "r"
bucket = "config"
store = "sqlite"
[[fold.transform]]
name = "kf"
module = "`+keyfilter+`"
config = { alow = ["a.>"] }
`, freePort(t), freePort(t))
			},
			code: exitFailure,
			want: []string{"fold r: transform[kf]: " + keyfilter + ": init", `unknown field "alow"`},
		},
		{
			name: "the HTTP address in use",
			config: func(t *testing.T) string {
				return writeConfig(t, embeddedBase+oneFold, freePort(t), holdPort(t))
			},
			code: exitFailure,
			want: []string{"http api: cannot listen on 127.0.0.1:", "address already in use"},
		},
		{
			name: "the embedded NATS address in use",
			config: func(t *testing.T) string {
				return writeConfig(t, embeddedBase+oneFold, holdPort(t), freePort(t))
			},
			code: exitFailure,
			want: []string{"embedded nats: cannot listen on 127.0.0.1:", "address already in use"},
		},
		{
			name: "a bucket that does not exist and cannot be created",
			config: func(t *testing.T) string {
				return writeConfig(t, embeddedBase+`
[[fold]]
name = "r"
bucket = "absent"
store = "sqlite"
`, freePort(t), freePort(t))
			},
			code: exitFailure,
			want: []string{"fold r: bucket absent does not exist", "[bucket.absent]"},
		},
		{
			name: "a corrupt CURRENT file",
			config: func(t *testing.T) string {
				path := writeConfig(t, embeddedBase+oneFold, freePort(t), freePort(t))
				dir := filepath.Join(filepath.Dir(path), "data", "folds", "r")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "CURRENT"), []byte("garbage\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return path
			},
			code: exitFailure,
			want: []string{"fold r:", filepath.Join("folds", "r") + ": corrupt CURRENT file"},
		},
		{
			name: "a config error",
			config: func(t *testing.T) string {
				return writeConfig(t, embeddedBase+`
[[fold]]
name = "r"
bucket = "config"
store = "sqlite"
scope = ["route..x"]
`, freePort(t), freePort(t))
			},
			code: exitUsage,
			want: []string{"slipstream.toml:", "fold[0].scope[0]", "empty token"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runUntilExit(t, tt.config(t), 20*time.Second, tt.interrupt)
			if goTrace.MatchString(got.output) {
				t.Fatalf("output has a Go panic or trace:\n%s", got.output)
			}
			if got.code != tt.code {
				t.Errorf("exit code %d, want %d; output:\n%s", got.code, tt.code, got.output)
			}
			for _, w := range tt.want {
				if !strings.Contains(got.output, w) {
					t.Errorf("output lacks %q:\n%s", w, got.output)
				}
			}
			// An interrupted start ends at once; the others fail at once
			// (no 30 s wait anywhere).
			if got.took > 10*time.Second {
				t.Errorf("took %s to fail", got.took)
			}
		})
	}
}

// TestGoTraceMatches proves the panic detector above sees a real panic: a
// test of a check must show the check can fail.
func TestGoTraceMatches(t *testing.T) {
	out, err := exec.Command("go", "run", "./testdata/panics").CombinedOutput()
	if err == nil {
		t.Fatalf("the panicking program exited 0:\n%s", out)
	}
	if !goTrace.Match(out) {
		t.Fatalf("goTrace does not match a real panic:\n%s", out)
	}
}
