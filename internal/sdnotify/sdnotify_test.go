package sdnotify

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// manager is a fake service manager: the datagram socket NOTIFY_SOCKET
// names, in a short directory under /tmp (socket paths are limited to about
// 108 bytes, which t.TempDir can exceed).
type manager struct {
	t    *testing.T
	conn *net.UnixConn
}

func newManager(t *testing.T, watchdogUsec string) *manager {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", watchdogUsec)
	t.Setenv("WATCHDOG_PID", "")
	return &manager{t: t, conn: conn}
}

// next is the next datagram, waiting at most d; ok is false when none came.
func (m *manager) next(d time.Duration) (msg string, ok bool) {
	m.t.Helper()
	buf := make([]byte, 4096)
	if err := m.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		m.t.Fatal(err)
	}
	n, err := m.conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", false
	}
	if err != nil {
		m.t.Fatal(err)
	}
	return string(buf[:n]), true
}

func (m *manager) expect(want string) {
	m.t.Helper()
	got, ok := m.next(5 * time.Second)
	if !ok {
		m.t.Fatalf("no message; want %q", want)
	}
	if got != want {
		m.t.Fatalf("message %q, want %q", got, want)
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestWithoutSocketNothingIsSent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "100000")
	n := New(quiet())
	if n.Enabled() || n.Watchdog() != 0 {
		t.Fatalf("enabled %v, watchdog %v without NOTIFY_SOCKET", n.Enabled(), n.Watchdog())
	}
	n.Ready("x")
	n.Status("y")
	n.Stopping("z")
	done := make(chan struct{})
	go func() { n.Watch(context.Background(), func() string { return "" }); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch without a manager did not return")
	}
}

func TestReadyStatusStopping(t *testing.T) {
	m := newManager(t, "")
	n := New(quiet())
	if !n.Enabled() || n.Watchdog() != 0 {
		t.Fatalf("enabled %v, watchdog %v", n.Enabled(), n.Watchdog())
	}
	n.Status("starting")
	m.expect("STATUS=starting")
	n.Ready("running\n0/1 caught up")
	m.expect("READY=1\nSTATUS=running 0/1 caught up")
	n.Status("running 0/1 caught up") // the same line: not sent again
	n.Status("running 1/1 caught up")
	m.expect("STATUS=running 1/1 caught up")
	n.Stopping("stopping")
	m.expect("STOPPING=1\nSTATUS=stopping")
	n.Stopping("again")
	n.Ready("after stopping")
	n.Status("after stopping")
	n.Stopped("stopped")
	m.expect("STATUS=stopped")
}

func TestWatchdogPingsFollowTheProbe(t *testing.T) {
	m := newManager(t, "100000")
	n := New(quiet())
	if n.Watchdog() != 100*time.Millisecond {
		t.Fatalf("watchdog %v, want 100ms", n.Watchdog())
	}
	var caughtUp atomic.Int32
	release := make(chan struct{})
	var blocked atomic.Bool
	probe := func() string {
		if blocked.Load() {
			<-release
		}
		return strconv.Itoa(int(caughtUp.Load())) + " caught up"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Watch(ctx, probe); close(done) }()

	// The first ping carries the probe's first status before it.
	m.expect("STATUS=0 caught up")
	for range 3 {
		m.expect("WATCHDOG=1")
	}
	caughtUp.Store(1)
	for {
		msg, ok := m.next(5 * time.Second)
		if !ok {
			t.Fatal("the new status was not sent")
		}
		if msg == "STATUS=1 caught up" {
			break
		}
		if msg != "WATCHDOG=1" {
			t.Fatalf("unexpected message %q", msg)
		}
	}

	// A probe that does not return holds the pings back: the manager's
	// timeout (here 100ms) passes several times without one.
	blocked.Store(true)
	for deadline := time.Now().Add(5 * time.Second); ; {
		msg, ok := m.next(time.Second)
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pings go on while the probe blocks")
		}
		if msg != "WATCHDOG=1" {
			t.Fatalf("unexpected message %q while the probe blocks", msg)
		}
	}
	blocked.Store(false)
	close(release)
	m.expect("WATCHDOG=1")

	// After STOPPING=1, no ping; after ctx ends, Watch returns.
	n.Stopping("stopping")
	for {
		msg, ok := m.next(5 * time.Second)
		if !ok {
			t.Fatal("STOPPING=1 was not sent")
		}
		if strings.HasPrefix(msg, "STOPPING=1") {
			break
		}
	}
	if msg, ok := m.next(500 * time.Millisecond); ok {
		t.Fatalf("message %q after STOPPING=1", msg)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return when its context ended")
	}
}

func TestWatchdogForAnotherProcess(t *testing.T) {
	newManager(t, "100000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if wd := New(quiet()).Watchdog(); wd != 0 {
		t.Fatalf("watchdog %v for another pid, want off", wd)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if wd := New(quiet()).Watchdog(); wd != 100*time.Millisecond {
		t.Fatalf("watchdog %v for this pid, want 100ms", wd)
	}
	t.Setenv("WATCHDOG_USEC", "soon")
	if wd := New(quiet()).Watchdog(); wd != 0 {
		t.Fatalf("watchdog %v for a malformed WATCHDOG_USEC, want off", wd)
	}
}
