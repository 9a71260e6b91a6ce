package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// notifySocket is a fake systemd: the datagram socket NOTIFY_SOCKET names.
// Every message it receives is kept, in order, one entry per datagram.
type notifySocket struct {
	path string
	conn *net.UnixConn
	done chan struct{}

	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// Socket paths are limited to about 108 bytes; t.TempDir's can be
	// longer.
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &notifySocket{path: filepath.Join(dir, "notify"), done: make(chan struct{})}
	s.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close(); <-s.done })
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := s.conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *notifySocket) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// index is the position of the first message from `from` on that has a
// line for which match is true, or -1.
func index(msgs []string, from int, match func(line string) bool) int {
	for i := max(from, 0); i < len(msgs); i++ {
		if slices.ContainsFunc(strings.Split(msgs[i], "\n"), match) {
			return i
		}
	}
	return -1
}

func is(want string) func(string) bool { return func(l string) bool { return l == want } }

func statusWith(sub string) func(string) bool {
	return func(l string) bool { return strings.HasPrefix(l, "STATUS=") && strings.Contains(l, sub) }
}

// drain waits until every datagram already sent has been read.
func (s *notifySocket) drain(t *testing.T) []string {
	t.Helper()
	// The sender has exited: what it sent is queued, and is read before
	// the deadline ends the reader.
	if err := s.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	<-s.done
	return s.received()
}

// summary lists messages one a line, a run of the same one as one line
// with its count.
func summary(msgs []string) string {
	var b strings.Builder
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && msgs[j] == msgs[i] {
			j++
		}
		fmt.Fprintf(&b, "  %q", msgs[i])
		if j-i > 1 {
			fmt.Fprintf(&b, " ×%d", j-i)
		}
		b.WriteString("\n")
		i = j
	}
	return b.String()
}

// unitExecStart is the ExecStart command line of contrib/slipstream.service,
// after checking the settings the notifications rely on.
func unitExecStart(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../contrib/slipstream.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"Type": "notify", "NotifyAccess": "main", "KillMode": "mixed"} {
		if got := settings[k]; !slices.Equal(got, []string{want}) {
			t.Errorf("unit file: %s=%v, want %s", k, got, want)
		}
	}
	if len(settings["WatchdogSec"]) != 1 {
		t.Errorf("unit file: WatchdogSec=%v, want one", settings["WatchdogSec"])
	}
	if r := settings["ExecReload"]; !slices.Equal(r, []string{"/bin/kill -HUP $MAINPID"}) {
		t.Errorf("unit file: ExecReload=%v, want the SIGHUP that reloads", r)
	}
	exec := settings["ExecStart"]
	if len(exec) != 1 {
		t.Fatalf("unit file: ExecStart=%v, want one", exec)
	}
	return strings.Fields(exec[0])
}

// TestSystemdNotify runs the unit file's ExecStart, with the quickstart's
// binary and config, under a fake NOTIFY_SOCKET and a 200ms watchdog: it
// must say STATUS while starting, READY=1 once started, ping the watchdog
// repeatedly, report the caught-up folds, and say STOPPING=1 on SIGTERM,
// with no ping after it.
func TestSystemdNotify(t *testing.T) {
	q := newQuickstart(t)
	argv := unitExecStart(t)
	want := []string{"/usr/local/bin/slipstream", "run", "--config", "/etc/slipstream/slipstream.toml"}
	if !slices.Equal(argv, want) {
		t.Fatalf("unit file: ExecStart=%q, want %q", argv, want)
	}
	argv[0], argv[3] = q.bin, q.config
	sock := listenNotify(t)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.path, "WATCHDOG_USEC=200000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("notifications:\n%s", summary(sock.received()))
			t.Logf("slipstream stderr:\n%s", &stderr)
		}
	})

	testenv.Eventually(t, 60*time.Second, "READY=1", func() bool {
		return index(sock.received(), 0, is("READY=1")) >= 0
	})
	// Ready means the API's address is bound, so it answers at once, and
	// the fold has started: it is past "starting", for good.
	resp, err := http.Get("http://" + q.httpAddr + "/v1/folds/routes")
	if err != nil {
		t.Fatalf("GET /v1/folds/routes right after READY=1: %v", err)
	}
	var st struct{ State string }
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.State == "" || st.State == "starting" {
		t.Fatalf("fold state %q (%v) right after READY=1, want it started", st.State, err)
	}

	q.cli("kv", "--server", q.natsURL, "put", "config", "route.a", "hello")
	q.read("route.a", "hello")
	testenv.Eventually(t, 30*time.Second, "three watchdog pings and a status with the fold caught up", func() bool {
		msgs := sock.received()
		ready := index(msgs, 0, is("READY=1"))
		pings := 0
		for i := index(msgs, ready, is("WATCHDOG=1")); i >= 0; i = index(msgs, i+1, is("WATCHDOG=1")) {
			pings++
		}
		return pings >= 3 && index(msgs, ready, statusWith("1/1 folds caught up")) >= 0
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("slipstream did not exit on SIGTERM")
	}
	msgs := sock.drain(t)

	starting := index(msgs, 0, statusWith("starting"))
	ready := index(msgs, 0, is("READY=1"))
	ping := index(msgs, 0, is("WATCHDOG=1"))
	stopping := index(msgs, 0, is("STOPPING=1"))
	if starting != 0 {
		t.Errorf("first message %q, want a STATUS saying it is starting", msgs[0])
	}
	if ready < 0 || !slices.ContainsFunc(strings.Split(msgs[ready], "\n"), statusWith("running")) {
		t.Errorf("READY=1 without its STATUS line:\n%s", summary(msgs))
	}
	if !(starting < ready && ready < ping && ping < stopping) {
		t.Errorf("order: starting %d, READY %d, first ping %d, STOPPING %d:\n%s", starting, ready, ping, stopping, summary(msgs))
	}
	if i := index(msgs, ready+1, is("READY=1")); i >= 0 {
		t.Errorf("READY=1 sent again (message %d)", i)
	}
	if i := index(msgs, stopping, is("WATCHDOG=1")); stopping < 0 || i >= 0 {
		t.Errorf("STOPPING=1 at %d, a ping after it at %d:\n%s", stopping, i, summary(msgs))
	}
	if last := msgs[len(msgs)-1]; last != "STATUS=stopped" {
		t.Errorf("last message %q, want STATUS=stopped", last)
	}
}
