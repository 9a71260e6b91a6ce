package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// natsNode is one nats-server process with JetStream, listening on
// 127.0.0.1 only, restartable on the same port and store directory.
type natsNode struct {
	reg     *registry
	bin     string
	name    string
	port    int
	storeD  string
	logPath string
	// cluster settings; empty for a single server
	clusterPort int
	routes      []string
	p           *proc
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func (n *natsNode) args() []string {
	a := []string{"-js", "-sd", n.storeD, "-a", "127.0.0.1", "-p", fmt.Sprint(n.port), "-n", n.name}
	if n.clusterPort != 0 {
		a = append(a, "--cluster_name", "crash", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.clusterPort),
			"--routes", strings.Join(n.routes, ","), "--no_advertise=true")
	}
	return a
}

// start runs the server and waits until it accepts client connections.
func (n *natsNode) start(ctx context.Context) error {
	if n.p != nil && !n.p.exited() {
		return fmt.Errorf("nats-server %s already runs", n.name)
	}
	p, err := n.reg.start("nats-server "+n.name, exec.Command(n.bin, n.args()...), n.logPath)
	if err != nil {
		return err
	}
	n.p = p
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("nats-server %s exited at start (log %s):\n%s", n.name, n.logPath, tail(n.logPath, 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server %s did not listen on port %d within 20s", n.name, n.port)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// kill SIGKILLs the server and waits for it to end.
func (n *natsNode) kill() {
	if n.p != nil {
		n.p.kill()
	}
}

// newNATS prepares a single server (not started) under dir.
func newNATS(reg *registry, bin, dir, name string) (*natsNode, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	sd := filepath.Join(dir, "nats-"+name)
	if err := os.MkdirAll(sd, 0o755); err != nil {
		return nil, err
	}
	return &natsNode{reg: reg, bin: bin, name: name, port: port, storeD: sd, logPath: filepath.Join(dir, "nats-"+name+".log")}, nil
}

// newCluster prepares n servers routed to each other (not started).
func newCluster(reg *registry, bin, dir string, size int) ([]*natsNode, error) {
	var nodes []*natsNode
	for i := range size {
		node, err := newNATS(reg, bin, dir, fmt.Sprintf("n%d", i+1))
		if err != nil {
			return nil, err
		}
		if node.clusterPort, err = freePort(); err != nil {
			return nil, err
		}
		nodes = append(nodes, node)
	}
	for _, node := range nodes {
		for _, other := range nodes {
			if other != node {
				node.routes = append(node.routes, fmt.Sprintf("nats://127.0.0.1:%d", other.clusterPort))
			}
		}
	}
	return nodes, nil
}

func urls(nodes []*natsNode) string {
	var u []string
	for _, n := range nodes {
		u = append(u, n.url())
	}
	return strings.Join(u, ",")
}

// connect opens the program's own client connection: it reconnects forever
// and has no reconnect buffer, so a write never lands after it was given up.
func connect(ctx context.Context, url string) (*nats.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := nats.Connect(url,
			nats.Name("slipstream-crash"),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(100*time.Millisecond),
			nats.ReconnectBufSize(-1),
			nats.Timeout(2*time.Second),
			// nats.go prints asynchronous errors (a reset connection) on
			// stderr by default; the faults are on purpose.
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
		)
		if err == nil {
			return nc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect %s: %w", url, err)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var errTimeout = errors.New("timed out")
