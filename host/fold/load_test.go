package fold_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// messages records the messages a fold logs.
type messages struct {
	mu   sync.Mutex
	seen []string
}

func (m *messages) Enabled(context.Context, slog.Level) bool { return true }
func (m *messages) Handle(_ context.Context, r slog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen = append(m.seen, r.Message)
	if os.Getenv("SLIPSTREAM_TEST_LOG") != "" {
		fmt.Fprintln(os.Stderr, r.Time.Format("15:04:05.000"), r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintln(os.Stderr, "   ", a.String()); return true })
	}
	return nil
}
func (m *messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m *messages) WithGroup(string) slog.Handler      { return m }

func (m *messages) count(msg string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.seen {
		if s == msg {
			n++
		}
	}
	return n
}

// foldState reads the published SQLite generation's state row and whether
// its unique key index exists, straight from the file.
func foldState(t *testing.T, dir string, gen int) (loading bool, indexed bool) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, fmt.Sprintf("gen-%06d", gen), "fold.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT loading, EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'kv_key') FROM state`).Scan(&loading, &indexed); err != nil {
		t.Fatal(err)
	}
	return loading, indexed
}

// slowPass is a pass-through transform that takes 5 ms per batch until
// told otherwise, so the bootstrap lasts long enough for the writes it must
// overlap.
type slowPass struct{ fast atomic.Bool }

func (*slowPass) Digest() string { return "" }
func (p *slowPass) Apply(_ context.Context, in []sdk.Mutation) ([]sdk.Mutation, error) {
	if !p.fast.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	return in, nil
}

// TestBulkLoadWithWritesDuringBootstrap: a new generation is filled in the
// store's bulk-load mode while the bucket keeps changing (overwrites,
// deletes, new keys, keys deleted and put again), and the load is ended
// before the fold is published: the fold equals the bucket and the file
// holds the finished layout. With bulk_load off the same run ends equal
// without a load.
func TestBulkLoadWithWritesDuringBootstrap(t *testing.T) {
	for _, bulk := range []bool{true, false} {
		t.Run(fmt.Sprintf("bulk_load=%v", bulk), func(t *testing.T) {
			srv := testenv.NATS(t)
			_, js := testenv.JetStream(t, srv.ClientURL())
			kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
			putAll(t, js, "cfg", 20000, "k", "v")

			dir := t.TempDir()
			h := newHarness(t, js, "cfg", nil, dir)
			log := &messages{}
			h.cfg.Logger = slog.New(log)
			h.cfg.MaxEntries = 50
			h.cfg.NoBulkLoad = !bulk
			slow := &slowPass{}
			h.cfg.Transform = slow
			h.start()
			ctx := context.Background()
			testenv.Eventually(t, 30*time.Second, "the re-list past its first 6000 keys", func() bool {
				p := h.f.Status(ctx).Pending
				return p > 0 && p <= 14000
			})
			// Published asynchronously, so that they land while the load
			// runs, to keys the load already holds: a put of such a key
			// is a second row of it, a delete removes a loaded row. The
			// oldest keys are among them: the stream's first sequence moves
			// while the re-list runs, which must not rebuild the fold.
			put := func(key, value string) {
				if _, err := js.PublishAsync("$KV.cfg."+key, []byte(value)); err != nil {
					t.Fatal(err)
				}
			}
			del := func(key string) {
				m := nats.NewMsg("$KV.cfg." + key)
				m.Header.Set("KV-Operation", "DEL")
				if _, err := js.PublishMsgAsync(m); err != nil {
					t.Fatal(err)
				}
			}
			del("k000000")
			put("k000001", "overwritten")
			for i := range 2000 {
				switch i % 4 {
				case 0:
					put(fmt.Sprintf("k%06d", 1+i*31%4999), "overwritten")
				case 1:
					del(fmt.Sprintf("k%06d", 1+i*17%4999))
				case 2:
					put(fmt.Sprintf("new%04d", i), "fresh")
				case 3:
					key := fmt.Sprintf("k%06d", 1+i*13%4999)
					del(key)
					put(key, "again")
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("publish did not complete")
			}
			if h.f.Ready() {
				t.Fatalf("setup: the bootstrap ended before the writes it should overlap: %+v", h.f.Status(ctx))
			}
			_, last := lastSeq(t, js, "cfg")
			st := h.waitSynced(last)
			slow.fast.Store(true) // Verify runs the bucket through it too
			diff(t, h.contents(), testenv.Contents(t, kv, ""))
			h.verified()
			want := len(testenv.Contents(t, kv, ""))
			if int(st.Keys) != want {
				t.Errorf("store reports %d keys, bucket has %d", st.Keys, want)
			}
			loading, indexed := foldState(t, dir, st.Generation)
			if loading || !indexed {
				t.Errorf("published generation: loading=%v, key index present=%v; want a finished load", loading, indexed)
			}
			ended := log.count("bulk load ended")
			if bulk && ended != 1 {
				t.Errorf("logged %q %d times, want once", "bulk load ended", ended)
			}
			if !bulk && ended != 0 {
				t.Errorf("bulk_load off, but a bulk load ran (%d)", ended)
			}
			// Every write was published before the load could end (checked
			// above); in generation 1 they overlapped that load.
			if st.Generation != 1 || log.count("rebuilding fold") != 0 {
				t.Errorf("generation %d: the fold rebuilt, so the writes may not have overlapped a load", st.Generation)
			}
			if !slices.Contains(log.seen, "published generation") {
				t.Errorf("no generation published; logs: %q", log.seen)
			}
		})
	}
}

// refusingLoader is a plugin whose store refuses every bulk load.
type refusingLoader struct{ *pluginhost.Plugin }

func (r refusingLoader) Loader() (sdk.Loader, bool) {
	l, ok := r.Plugin.Loader()
	return refusal{l}, ok
}

type refusal struct{ sdk.Loader }

func (refusal) BeginLoad(context.Context) error { return errors.New("no loads here") }

// TestRefusedBulkLoadFillsBatchByBatch: a store that refuses BeginLoad (a
// cursor-0 store holding keys, a plugin built before the capability) is
// filled batch by batch instead of stalling the fold.
func TestRefusedBulkLoadFillsBatchByBatch(t *testing.T) {
	h, kv, last, log := filledBucket(t, 3000)
	h.wrapLaunch(func(p *pluginhost.Plugin) fold.Handle { return refusingLoader{p} })
	h.start()
	h.waitSynced(last)
	diff(t, h.contents(), testenv.Contents(t, kv, ""))
	if n := log.count("store refused a bulk load; filling it batch by batch"); n != 1 {
		t.Errorf("logged the refusal %d times, want once", n)
	}
	if n := log.count("bulk load ended"); n != 0 {
		t.Errorf("a refused load was ended %d times", n)
	}
}

// TestNoLoadWithoutTheCapability: a plugin that does not declare bulk-load
// (the example store) fills its generations batch by batch; the host does
// not report a load that never ran.
func TestNoLoadWithoutTheCapability(t *testing.T) {
	h, kv, last, log := filledBucket(t, 300)
	bin := testenv.Binary(t, "sdk/example", "slipstream-store-example")
	h.cfg.Launch = func(ctx context.Context) (fold.Handle, error) {
		return pluginhost.Launch(ctx, pluginhost.Config{Path: bin})
	}
	h.start()
	h.waitSynced(last)
	diff(t, h.contents(), testenv.Contents(t, kv, ""))
	if n := log.count("bulk load ended"); n != 0 {
		t.Errorf("logged %d bulk loads for a store without the capability", n)
	}
}

// filledBucket is a bucket "cfg" of n keys on a new server, its last
// sequence, and a fold harness on it whose log is kept, not yet started.
func filledBucket(t *testing.T, n int) (*harness, jetstream.KeyValue, uint64, *messages) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	putAll(t, js, "cfg", n, "k", "v")
	_, last := lastSeq(t, js, "cfg")
	h := newHarness(t, js, "cfg", nil, t.TempDir())
	log := &messages{}
	h.cfg.Logger = slog.New(log)
	return h, kv, last, log
}

func (m *messages) total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seen)
}
