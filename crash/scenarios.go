package main

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// scenario is one fault campaign.
type scenario struct {
	name string
	// recovery says what the recovery time measures.
	recovery string
	run      func(context.Context, *env) error
}

var scenarios = []scenario{
	{"host-kill", "host restart -> /readyz 200", hostKill},
	{"plugin-kill", "plugin SIGKILL -> new plugin, synced, post-fault write readable", pluginKill},
	{"nats-kill", "server back -> synced, post-fault write readable", natsKill},
	{"conn-cut", "connections allowed again -> synced, post-fault write readable", connCut},
	{"cluster-leader", "leader SIGKILL -> synced, post-fault write readable", clusterLeader},
}

func scenarioNames() []string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return out
}

// single starts one nats-server, the bucket, and the host connected to
// slipURL (the server itself when empty), and waits for the host to be
// ready.
func (e *env) single(ctx context.Context, slipURL func(*natsNode) (string, error)) (*natsNode, error) {
	n, err := newNATS(e.reg, e.o.natsServer, e.dir, "n1")
	if err != nil {
		return nil, err
	}
	e.nodes = append(e.nodes, n)
	if err := n.start(ctx); err != nil {
		return nil, err
	}
	if err := e.open(ctx, n.url(), 1); err != nil {
		return nil, err
	}
	if _, err := e.marker(ctx); err != nil {
		return nil, err
	}
	u := n.url()
	if slipURL != nil {
		if u, err = slipURL(n); err != nil {
			return nil, err
		}
	}
	if err := e.startHost(u, 1); err != nil {
		return nil, err
	}
	if err := e.h.waitReady(ctx, e.o.wait); err != nil {
		return nil, err
	}
	e.lr.enabled.Store(true)
	return n, nil
}

// hostKill: SIGKILL the host under live writes; its plugins must exit on
// their own; restart it and time /readyz.
func hostKill(ctx context.Context, e *env) error {
	if _, err := e.single(ctx, nil); err != nil {
		return err
	}
	var exitMax time.Duration
	for c := 1; c <= e.o.cycles; c++ {
		e.lr.cycle.Store(int64(c))
		e.w.resume()
		if err := sleepCtx(ctx, e.pause()); err != nil {
			return err
		}
		plugins := e.h.plugins()
		var all []int
		for _, f := range e.folds {
			if len(plugins[f.store]) == 0 {
				return fmt.Errorf("cycle %d: %w for %s", c, errNoPlugin, f.name)
			}
			all = append(all, plugins[f.store]...)
		}
		exes := map[int]string{}
		for _, pid := range all {
			exes[pid] = exeOf(pid)
		}
		e.lr.enabled.Store(false)
		e.h.kill()
		left, took := waitExit(all, 5*time.Second)
		exitMax = max(exitMax, took)
		for _, pid := range left {
			for _, f := range e.folds {
				if slices.Contains(plugins[f.store], pid) {
					e.res[f.name].orphans++
					e.res[f.name].notes = append(e.res[f.name].notes,
						fmt.Sprintf("cycle %d: plugin pid %d (%s) still ran 5s after its host was SIGKILLed; parent now %d", c, pid, exes[pid], ppidOf(pid)))
				}
			}
			killPlugin(pid, exes[pid])
		}
		start := time.Now()
		if err := e.h.start(); err != nil {
			return err
		}
		if err := e.h.waitReady(ctx, e.o.wait); err != nil {
			return fmt.Errorf("cycle %d: %w", c, err)
		}
		d := time.Since(start)
		rec := map[string]time.Duration{}
		for _, f := range e.folds {
			rec[f.name] = d
		}
		e.recovered(rec, 0)
		e.lr.enabled.Store(true)
		e.logf("cycle %d: host killed with %d plugins (all gone after %v), ready %v after the restart", c, len(all), took.Round(time.Millisecond), d.Round(time.Millisecond))
		if err := e.check(ctx, c); err != nil {
			return err
		}
	}
	e.note("slowest plugin exit after its host's SIGKILL: %v", exitMax.Round(time.Millisecond))
	return nil
}

// pluginKill: SIGKILL every fold's store plugin (children of the host)
// under live writes and reads.
func pluginKill(ctx context.Context, e *env) error {
	if _, err := e.single(ctx, nil); err != nil {
		return err
	}
	for c := 1; c <= e.o.cycles; c++ {
		e.lr.cycle.Store(int64(c))
		e.w.resume()
		if err := sleepCtx(ctx, e.pause()); err != nil {
			return err
		}
		plugins := e.h.plugins()
		killed := map[string][]int{}
		for _, f := range e.folds {
			if len(plugins[f.store]) == 0 {
				return fmt.Errorf("cycle %d: %w for %s", c, errNoPlugin, f.name)
			}
			killed[f.store] = plugins[f.store]
		}
		start := time.Now()
		for _, pids := range killed {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		rev, err := e.marker(ctx)
		if err != nil {
			return err
		}
		accepted := time.Since(start)
		restarted := func(f foldSpec) bool {
			for _, pid := range e.h.plugins()[f.store] {
				if !slices.Contains(killed[f.store], pid) {
					return true
				}
			}
			return false
		}
		rec, err := e.waitCaughtUp(ctx, start, rev, restarted)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", c, err)
		}
		e.recovered(rec, accepted)
		e.logf("cycle %d: killed plugins %v, recovered %v", c, killed, rec)
		if err := e.check(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// natsKill: SIGKILL the nats-server, restart it on the same port and store
// directory after a short pause.
func natsKill(ctx context.Context, e *env) error {
	n, err := e.single(ctx, nil)
	if err != nil {
		return err
	}
	for c := 1; c <= e.o.cycles; c++ {
		e.lr.cycle.Store(int64(c))
		e.w.resume()
		if err := sleepCtx(ctx, e.pause()); err != nil {
			return err
		}
		n.kill()
		down := 200*time.Millisecond + time.Duration(e.rng.Int64N(int64(1300*time.Millisecond)))
		if err := sleepCtx(ctx, down); err != nil {
			return err
		}
		if err := n.start(ctx); err != nil {
			return fmt.Errorf("cycle %d: restart: %w", c, err)
		}
		start := time.Now()
		rev, err := e.marker(ctx)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", c, err)
		}
		accepted := time.Since(start)
		rec, err := e.waitCaughtUp(ctx, start, rev, nil)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", c, err)
		}
		e.recovered(rec, accepted)
		e.logf("cycle %d: server down %v, recovered %v", c, down.Round(time.Millisecond), rec)
		if err := e.check(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// connCut: slipstream reaches NATS through a proxy of this program; each
// cycle resets every proxied connection and refuses new ones for about a
// second. The writer talks to the server directly and goes on.
func connCut(ctx context.Context, e *env) error {
	var px *proxy
	_, err := e.single(ctx, func(n *natsNode) (string, error) {
		var err error
		px, err = newProxy(fmt.Sprintf("127.0.0.1:%d", n.port))
		if err != nil {
			return "", err
		}
		return px.url(), nil
	})
	if px != nil {
		defer px.close()
	}
	if err != nil {
		return err
	}
	for c := 1; c <= e.o.cycles; c++ {
		e.lr.cycle.Store(int64(c))
		e.w.resume()
		if err := sleepCtx(ctx, e.pause()); err != nil {
			return err
		}
		cut := px.cut()
		if cut == 0 {
			e.note("cycle %d: the proxy had no connection to cut", c)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
		if err := px.allow(); err != nil {
			return err
		}
		start := time.Now()
		rev, err := e.marker(ctx)
		if err != nil {
			return err
		}
		accepted := time.Since(start)
		rec, err := e.waitCaughtUp(ctx, start, rev, nil)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", c, err)
		}
		if cut > 0 {
			e.recovered(rec, accepted)
		}
		e.logf("cycle %d: cut %d connections, recovered %v", c, cut, rec)
		if err := e.check(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// clusterLeader: a 3-node cluster and a bucket with 3 replicas; each cycle
// SIGKILLs the node leading the bucket's stream (the first cycle while the
// folds bootstrap a preloaded bucket) and restarts it after a pause.
func clusterLeader(ctx context.Context, e *env) error {
	nodes, err := newCluster(e.reg, e.o.natsServer, e.dir, 3)
	if err != nil {
		return err
	}
	e.nodes = nodes
	for _, n := range nodes {
		if err := n.start(ctx); err != nil {
			return err
		}
	}
	if err := e.open(ctx, urls(nodes), 3); err != nil {
		return err
	}
	if err := e.waitHealthy(ctx); err != nil {
		return err
	}
	if err := e.preload(ctx); err != nil {
		return err
	}
	if _, err := e.marker(ctx); err != nil {
		return err
	}
	if err := e.startHost(urls(nodes), 3); err != nil {
		return err
	}
	if err := e.h.waitAPI(ctx, e.o.wait); err != nil {
		return err
	}
	e.lr.enabled.Store(true)
	for c := 1; c <= e.o.cycles; c++ {
		e.lr.cycle.Store(int64(c))
		e.w.resume()
		if c == 1 {
			// Kill while the folds bootstrap.
			what, err := e.waitBootstrapping(ctx)
			if err != nil {
				return err
			}
			e.note("cycle 1: leader killed %s", what)
		} else if err := sleepCtx(ctx, e.pause()); err != nil {
			return err
		}
		info, err := e.stream(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("cycle %d: stream KV_%s has no leader", c, bucketName)
		}
		var victim *natsNode
		for _, n := range nodes {
			if n.name == info.Cluster.Leader {
				victim = n
			}
		}
		if victim == nil {
			return fmt.Errorf("cycle %d: leader %q is none of the nodes", c, info.Cluster.Leader)
		}
		victim.kill()
		start := time.Now()
		down := 500*time.Millisecond + time.Duration(e.rng.Int64N(int64(time.Second)))
		var restart onceErr
		restart.run(func() error {
			if err := sleepCtx(ctx, down); err != nil {
				return err
			}
			return victim.start(ctx)
		})
		rev, err := e.marker(ctx)
		if err != nil {
			_ = restart.wait()
			return fmt.Errorf("cycle %d: %w", c, err)
		}
		accepted := time.Since(start)
		rec, err := e.waitCaughtUp(ctx, start, rev, nil)
		if rerr := restart.wait(); rerr != nil {
			return fmt.Errorf("cycle %d: restart %s: %w", c, victim.name, rerr)
		}
		if err != nil {
			return fmt.Errorf("cycle %d: %w", c, err)
		}
		e.recovered(rec, accepted)
		e.logf("cycle %d: killed leader %s (down %v), recovered %v", c, victim.name, down.Round(time.Millisecond), rec)
		if err := e.check(ctx, c); err != nil {
			return err
		}
		if err := e.waitHealthy(ctx); err != nil {
			return fmt.Errorf("cycle %d: %w", c, err)
		}
	}
	return nil
}

// waitHealthy waits until the bucket's stream has a leader and every
// replica is current, so that the next kill leaves a quorum.
func (e *env) waitHealthy(ctx context.Context) error {
	deadline := time.Now().Add(e.o.wait)
	why := ""
	for {
		info, err := e.stream(ctx)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2 {
			ok := true
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					ok = false
					why = fmt.Sprintf("replica %s current=%v offline=%v lag=%d", r.Name, r.Current, r.Offline, r.Lag)
				}
			}
			if ok {
				return nil
			}
		} else if err != nil {
			why = err.Error()
		} else if info.Cluster != nil {
			why = fmt.Sprintf("leader %q, %d replicas", info.Cluster.Leader, len(info.Cluster.Replicas))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stream KV_%s not healthy within %v: %s", bucketName, e.o.wait, why)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// preload puts -bootstrap-keys keys of 200 bytes before slipstream starts.
func (e *env) preload(ctx context.Context) error {
	val := make([]byte, 200)
	for i := range val {
		val[i] = 'a' + byte(e.rng.IntN(26))
	}
	pending := map[int]jetstream.PubAckFuture{}
	for round := 0; round < 5; round++ {
		for i := range e.o.bootstrapKeys {
			if round > 0 {
				if _, retry := pending[i]; !retry {
					continue
				}
			}
			f, err := e.js.PublishAsync(fmt.Sprintf("$KV.%s.b.%05d", bucketName, i), val)
			if err != nil {
				return fmt.Errorf("preload: %w", err)
			}
			pending[i] = f
		}
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(e.o.wait):
			return fmt.Errorf("preload: %d acks outstanding after %v", e.js.PublishAsyncPending(), e.o.wait)
		case <-ctx.Done():
			return ctx.Err()
		}
		for i, f := range pending {
			select {
			case <-f.Ok():
				delete(pending, i)
			case <-f.Err():
			}
		}
		if len(pending) == 0 {
			e.logf("preloaded %d keys", e.o.bootstrapKeys)
			return nil
		}
	}
	return fmt.Errorf("preload: %d keys refused 5 times", len(pending))
}

// waitBootstrapping waits until a fold reports bootstrapping and says in
// what state the folds were at that point.
func (e *env) waitBootstrapping(ctx context.Context) (string, error) {
	deadline := time.Now().Add(e.o.wait)
	for {
		var desc string
		booting := false
		for _, f := range e.folds {
			st, err := e.h.status(ctx, f.name)
			if err != nil {
				desc += fmt.Sprintf(" %s: %v;", f.name, err)
				continue
			}
			desc += fmt.Sprintf(" %s %s at cursor %d, pending %d;", f.name, st.State, st.Cursor, st.Pending)
			if st.State == "bootstrapping" {
				booting = true
			}
		}
		if booting {
			return "while" + desc, nil
		}
		if st, err := e.h.status(ctx, e.folds[0].name); err == nil && st.State == "synced" {
			return "too late, the bootstrap had ended:" + desc, nil
		}
		if e.h.p.exited() {
			return "", fmt.Errorf("slipstream exited:\n%s", tail(e.h.logPath, 25))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no fold bootstrapping within %v:%s", e.o.wait, desc)
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return "", err
		}
	}
}
