package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/service"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// The read-only interface of docs/sqlite.md, exercised the way an outside
// program would use it: the test takes the queries from the page itself
// (the ```sql blocks that begin with "-- name: NAME") and reads the fold
// only through the steps it describes: read CURRENT, open the generation's
// fold.db with mode=ro, run the queries, re-read CURRENT to follow a swap.

const sqliteDoc = "../../docs/sqlite.md"

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var namedQuery = regexp.MustCompile("(?s)```sql\n-- name: ([a-z-]+)\n(.*?)```")

// docQueries returns the named queries of docs/sqlite.md.
func docQueries(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(sqliteDoc)
	if err != nil {
		t.Fatal(err)
	}
	qs := map[string]string{}
	for _, m := range namedQuery.FindAllStringSubmatch(string(doc), -1) {
		qs[m[1]] = m[2]
	}
	for _, name := range []string{"get", "prefix-range", "prefix", "state", "meta"} {
		if qs[name] == "" {
			t.Fatalf("docs/sqlite.md has no query named %q", name)
		}
	}
	for _, s := range []string{"mode=ro", "CURRENT", "/fold.db", "immutable=1"} {
		if !strings.Contains(string(doc), s) {
			t.Fatalf("docs/sqlite.md does not mention %s", s)
		}
	}
	return qs
}

// reader is an outside program following a fold as docs/sqlite.md says.
type reader struct {
	t       *testing.T
	foldDir string // DATA_DIR/folds/FOLD
	gen     string // the generation open, as CURRENT names it
	db      *sql.DB
	q       map[string]string
}

// follow re-reads CURRENT and, when it names another generation, opens
// that generation's fold.db read-only and closes the one open. It reports
// whether it switched.
func (r *reader) follow() bool {
	r.t.Helper()
	raw, err := os.ReadFile(filepath.Join(r.foldDir, "CURRENT"))
	if err != nil {
		r.t.Fatalf("read CURRENT: %v", err)
	}
	gen := strings.TrimSuffix(string(raw), "\n")
	if gen == r.gen {
		return false
	}
	path := filepath.Join(r.foldDir, gen, "fold.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		r.t.Fatalf("open %s: %v", path, err)
	}
	if r.db != nil {
		r.db.Close()
	}
	r.gen, r.db = gen, db
	return true
}

type row struct {
	value    string
	revision uint64
}

// get runs the documented key query, binding the key as a Go string (TEXT),
// as a program naturally would.
func (r *reader) get(key string) (row, bool) {
	r.t.Helper()
	var e row
	err := r.db.QueryRow(r.q["get"], sql.Named("key", key)).Scan(&e.value, &e.revision)
	if errors.Is(err, sql.ErrNoRows) {
		return e, false
	}
	if err != nil {
		r.t.Fatalf("get %q: %v", key, err)
	}
	return e, true
}

// scan runs a documented prefix query.
func (r *reader) scan(query string, args ...any) map[string]row {
	r.t.Helper()
	rows, err := r.db.Query(r.q[query], args...)
	if err != nil {
		r.t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	out := map[string]row{}
	prev := ""
	for rows.Next() {
		var k []byte
		var e row
		if err := rows.Scan(&k, &e.value, &e.revision); err != nil {
			r.t.Fatal(err)
		}
		if string(k) <= prev && prev != "" {
			r.t.Errorf("%s: %q after %q: not in key order", query, k, prev)
		}
		prev = string(k)
		out[string(k)] = e
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// state runs the documented state query.
func (r *reader) state() (cursor uint64, keys, bytes int64, loading int) {
	r.t.Helper()
	if err := r.db.QueryRow(r.q["state"]).Scan(&cursor, &keys, &bytes, &loading); err != nil {
		r.t.Fatalf("state: %v", err)
	}
	return
}

// meta runs the documented metadata query.
func (r *reader) meta() map[string]string {
	r.t.Helper()
	rows, err := r.db.Query(r.q["meta"])
	if err != nil {
		r.t.Fatalf("meta: %v", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			r.t.Fatal(err)
		}
		out[name] = value
	}
	return out
}

// check compares everything the documented queries read with the bucket's
// keys in scope (and their revisions), the keys under prefix (end is the
// prefix-range query's bound) in particular, and the state with the fold's.
func (r *reader) check(kv jetstream.KeyValue, f *fold.Fold, scope []string, prefix, end string) {
	r.t.Helper()
	ctx := context.Background()
	want := map[string]row{}
	var bytes int64
	for k, v := range testenv.Contents(r.t, kv, "") {
		if !slices.ContainsFunc(scope, func(p string) bool { return strings.HasPrefix(k, p) }) {
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			r.t.Fatal(err)
		}
		want[k] = row{v, e.Revision()}
		bytes += int64(len(k) + len(v))
	}
	for k, w := range want {
		if got, ok := r.get(k); !ok || got != w {
			r.t.Errorf("%s: get %q = %+v, %v; want %+v", r.gen, k, got, ok, w)
		}
	}
	if got, ok := r.get("route.nope"); ok {
		r.t.Errorf("%s: get of a key the fold lacks found %+v", r.gen, got)
	}
	under := map[string]row{}
	for k, w := range want {
		if strings.HasPrefix(k, prefix) {
			under[k] = w
		}
	}
	for _, q := range []struct {
		name string
		args []any
	}{
		{"prefix-range", []any{sql.Named("prefix", prefix), sql.Named("end", end)}},
		{"prefix", []any{sql.Named("prefix", prefix)}},
	} {
		if got := r.scan(q.name, q.args...); fmt.Sprint(got) != fmt.Sprint(under) {
			r.t.Errorf("%s: %s %q:\n  %v\nwant\n  %v", r.gen, q.name, prefix, got, under)
		}
	}
	cursor, keys, size, loading := r.state()
	st := f.Status(ctx)
	if cursor != st.Cursor || keys != int64(len(want)) || size != bytes || loading != 0 {
		r.t.Errorf("%s: state cursor %d, keys %d, bytes %d, loading %d; want cursor %d (the fold's), keys %d, bytes %d, loading 0",
			r.gen, cursor, keys, size, loading, st.Cursor, len(want), bytes)
	}
	if fmt.Sprintf("gen-%06d", st.Generation) != r.gen {
		r.t.Errorf("reading %s; the fold reports generation %d", r.gen, st.Generation)
	}
}

// TestReadThroughTheDocumentedInterface: an outside reader that follows
// docs/sqlite.md reads exactly the fold's keys, values, revisions and
// cursor, and finds the new generation after a rebuild swaps it in.
func TestReadThroughTheDocumentedInterface(t *testing.T) {
	q := docQueries(t)
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx := context.Background()
	var last uint64
	put := func(k, v string) {
		t.Helper()
		rev, err := kv.Put(ctx, k, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		last = rev
	}
	put("route.a", "10.0.0.1")
	put("route.b", "10.0.0.2")
	put("route.c", "gone")
	put("route.a", "10.0.0.7") // a later revision wins
	put("route.empty", "")
	put("router.x", "beside the prefix, outside the scope")
	put("users.x", "outside the scope")
	if err := kv.Delete(ctx, "route.c"); err != nil {
		t.Fatal(err)
	}
	last++

	dir := t.TempDir()
	svc := runService(t, dir, srv.ClientURL(), `["route.>"]`)
	waitReady(t, svc.fold, last, 1)

	r := &reader{t: t, foldDir: filepath.Join(dir, "data", "folds", "f"), q: q}
	if !r.follow() || r.gen != "gen-000001" {
		t.Fatalf("first generation %q", r.gen)
	}
	defer func() { r.db.Close() }()
	r.check(kv, svc.fold, []string{"route."}, "route.", "route/")
	meta := r.meta()
	if meta["slipstream.bucket"] != "cfg" || meta["slipstream.scope"] != "route.>" || meta["slipstream.stream"] != "KV_cfg" {
		t.Errorf("meta %v", meta)
	}

	// The pitfall the page warns of: a plain text comparison finds nothing.
	var n int
	if err := r.db.QueryRow(`SELECT count(*) FROM kv WHERE key = 'route.a'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("key = 'route.a' counted %d (%v); the page says a TEXT never equals a BLOB key", n, err)
	}
	if _, keys, _, _ := r.state(); r.db.QueryRow(`SELECT count(*) FROM kv WHERE key >= 'zzz'`).Scan(&n) != nil || int64(n) != keys {
		t.Errorf("key >= 'zzz' counted %d of the %d keys; the page says every BLOB sorts after any TEXT", n, keys)
	}

	// Live: a put is read once the fold committed it.
	put("route.d", "new")
	waitReady(t, svc.fold, last, 1)
	if r.follow() {
		t.Fatal("CURRENT changed without a rebuild")
	}
	r.check(kv, svc.fold, []string{"route."}, "route.", "route/")

	// A scope change rebuilds into generation 2. The reader keeps its
	// connection to generation 1 through the restart and the swap.
	old := r.db
	r.db = nil // follow must not close it: the test looks at it below
	oldGen := r.gen
	svc.stop()
	put("users.y", "in the new scope")
	svc = runService(t, dir, srv.ClientURL(), `["route.>", "users.>"]`)
	waitReady(t, svc.fold, last, 2)
	if !r.follow() || r.gen != "gen-000002" {
		t.Fatalf("after the rebuild CURRENT names %q; want gen-000002", r.gen)
	}
	r.check(kv, svc.fold, []string{"route.", "users."}, "users.", "users/")
	if got := r.meta()["slipstream.scope"]; got != "route.>\nusers.>" {
		t.Errorf("scope in meta %q after the rebuild", got)
	}

	// What the page says of the old generation: its directory is removed,
	// a new open of it fails, and a connection still open answers from the
	// old file, frozen, or fails.
	oldDir := filepath.Join(r.foldDir, oldGen)
	testenv.Eventually(t, 10*time.Second, "the old generation's directory removed", func() bool {
		_, err := os.Stat(oldDir)
		return errors.Is(err, os.ErrNotExist)
	})
	reopen, _ := sql.Open("sqlite3", "file:"+filepath.Join(oldDir, "fold.db")+"?mode=ro")
	if err := reopen.Ping(); err == nil {
		var c uint64
		err = reopen.QueryRow(q["state"]).Scan(&c, new(int64), new(int64), new(int))
		if err == nil {
			t.Errorf("the removed generation opened again and read cursor %d", c)
		}
	}
	reopen.Close()
	var oldCursor uint64
	err := old.QueryRow(q["state"]).Scan(&oldCursor, new(int64), new(int64), new(int))
	t.Logf("an open connection to the removed generation: cursor %d, err %v", oldCursor, err)
	if err == nil && oldCursor >= last {
		t.Errorf("the removed generation's connection reads cursor %d, past the swap", oldCursor)
	}
	old.Close()
}

// runningService is a running slipstream with one SQLite fold "f" of bucket cfg.
type runningService struct {
	fold   *fold.Fold
	cancel context.CancelFunc
	done   chan error
	t      *testing.T
}

func (s *runningService) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("service: %v", err)
	}
	s.cancel = nil
}

// runService writes a config with the given scope to dir and runs it.
func runService(t *testing.T, dir, natsURL, scope string) *runningService {
	t.Helper()
	plugin := testenv.SQLitePlugin(t)
	text := fmt.Sprintf(`
data_dir = "data"
plugin_dir = %q
[nats]
url = %q
[http]
listen = "off"
[[fold]]
name = "f"
bucket = "cfg"
store = "sqlite"
scope = %s
`, filepath.Dir(plugin), natsURL, scope)
	cfg, err := config.Parse(filepath.Join(dir, "slipstream.toml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := service.Start(ctx, cfg, slog.New(slog.DiscardHandler), service.Options{CheckEvery: 50 * time.Millisecond})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &runningService{fold: svc.Folds()[0], cancel: cancel, done: make(chan error, 1), t: t}
	go func() { s.done <- svc.Run(ctx) }()
	t.Cleanup(s.stop)
	return s
}

// waitReady waits until f is ready at cursor or later in generation gen.
func waitReady(t *testing.T, f *fold.Fold, cursor uint64, gen int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, fmt.Sprintf("ready at %d in generation %d", cursor, gen), func() bool {
		st := f.Status(context.Background())
		return st.Ready && st.Cursor >= cursor && st.Generation == gen
	})
}
