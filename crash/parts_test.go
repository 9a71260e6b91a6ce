package main

import (
	"bufio"
	"context"
	"database/sql"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestListBucket: the bucket listing has the live keys only, each with its
// last value and revision, after puts, overwrites, deletes and purges.
func TestListBucket(t *testing.T) {
	s := testenv.NATS(t)
	_, js := testenv.JetStream(t, s.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "b", History: 1})
	ctx := context.Background()
	want := map[string]kvEntry{}
	put := func(k string, v []byte) {
		rev, err := kv.Put(ctx, k, v)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = kvEntry{Revision: rev, Value: v}
	}
	put("a", []byte("1"))
	put("b", []byte{0xff, 0})
	put("a", []byte("2"))
	put("c", []byte("3"))
	put("d", []byte{})
	if err := kv.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	delete(want, "c")
	put("e", []byte("5"))
	if err := kv.Purge(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	delete(want, "e")
	got, err := listBucket(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	var fold []foldEntry
	for _, k := range []string{"a", "b", "d"} {
		fold = append(fold, foldEntry{Key: k, Revision: got[k].Revision, Value: got[k].Value})
	}
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g.Revision != w.Revision || string(g.Value) != string(w.Value) {
			t.Errorf("%s: listed %+v, want %+v", k, g, w)
		}
	}
	if d := compare(want, fold); len(d) != 0 {
		t.Errorf("compare: %v", d)
	}
}

// TestProxyCutAndAllow: cut resets proxied connections and refuses new ones;
// allow serves again on the same port.
func TestProxyCutAndAllow(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }() // echo
		}
	}()
	p, err := newProxy(up.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	echo := func(c net.Conn) error {
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && line != "ping\n" {
			t.Fatalf("echo %q", line)
		}
		return err
	}
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c); err != nil {
		t.Fatal(err)
	}
	if n := p.cut(); n != 1 {
		t.Errorf("cut %d connections, want 1", n)
	}
	if err := echo(c); err == nil {
		t.Error("a cut connection still echoes")
	}
	if c2, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		c2.Close()
		t.Error("the proxy accepted a connection while cut")
	}
	if err := p.allow(); err != nil {
		t.Fatal(err)
	}
	c3, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := echo(c3); err != nil {
		t.Fatalf("after allow: %v", err)
	}
}

// TestCheckCatchesTamperedFold runs the real slipstream binary and SQLite
// plugin: a fold that agrees passes the check; after rows are deleted and
// changed in its database behind slipstream's back, the same check counts
// each tampered key as a divergence.
func TestCheckCatchesTamperedFold(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the slipstream binary")
	}
	bin := testenv.Binary(t, "cmd/slipstream", "slipstream")
	plugin := testenv.SQLitePlugin(t)
	if filepath.Dir(plugin) != filepath.Dir(bin) {
		t.Fatalf("setup: plugin %s is not beside %s", plugin, bin)
	}
	reg := newRegistry()
	defer reg.killAll()
	o := &options{binDir: filepath.Dir(bin), stores: []string{"sqlite"}, keys: 50, rate: 200, reads: 20,
		wait: 60 * time.Second, seed: 1}
	e, err := newEnv(o, reg, t.TempDir(), "tamper", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	ctx := context.Background()
	s := testenv.NATS(t)
	if err := e.open(ctx, s.ClientURL(), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.marker(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.startHost(s.ClientURL(), 1); err != nil {
		t.Fatal(err)
	}
	if err := e.h.waitReady(ctx, o.wait); err != nil {
		t.Fatal(err)
	}
	e.w.resume()
	time.Sleep(500 * time.Millisecond)
	if err := e.check(ctx, 1); err != nil {
		t.Fatal(err)
	}
	r := e.res["crash-sqlite"]
	if r.divergences != 0 || r.readsFailed != 0 {
		t.Fatalf("untouched fold: %d divergences, %d reads failed: %v", r.divergences, r.readsFailed, r.notes)
	}

	e.h.kill()
	db, err := sql.Open("sqlite3", filepath.Join(e.dir, "data", "folds", "crash-sqlite", "gen-000001", "fold.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DELETE FROM kv WHERE key = CAST('` + sentinelKey + `' AS BLOB)`,
		`UPDATE kv SET value = CAST('tampered' AS BLOB) WHERE key = (SELECT key FROM kv WHERE key <> CAST('` + sentinelKey + `' AS BLOB) ORDER BY key LIMIT 1)`,
		`INSERT INTO kv (key, value, revision) VALUES (CAST('k.extra' AS BLOB), CAST('x' AS BLOB), 1)`,
	} {
		if res, err := db.Exec(q); err != nil {
			t.Fatal(err)
		} else if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("%s: %d rows", q, n)
		}
	}
	db.Close()
	if err := e.h.start(); err != nil {
		t.Fatal(err)
	}
	if err := e.h.waitReady(ctx, o.wait); err != nil {
		t.Fatal(err)
	}
	if err := e.check(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if r.divergences != 3 {
		t.Fatalf("tampered fold: %d divergences, want 3 (missing, value, extra): %v", r.divergences, r.notes)
	}
}

// TestWaitExitCountsSurvivors: a process that outlives the wait is
// reported (an orphan, in host-kill); once it ends it is not.
func TestWaitExitCountsSurvivors(t *testing.T) {
	reg := newRegistry()
	defer reg.killAll()
	p, err := reg.start("sleep", exec.Command("sleep", "30"), filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := waitExit([]int{p.pid()}, 200*time.Millisecond); len(left) != 1 {
		t.Fatalf("a running process was not reported: %v", left)
	}
	p.kill()
	if left, _ := waitExit([]int{p.pid()}, 2*time.Second); len(left) != 0 {
		t.Fatalf("a killed process was reported: %v", left)
	}
}
