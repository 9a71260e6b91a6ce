package fold_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// smallDisk mounts a tmpfs of size bytes for the test and returns its
// path and a function that resizes it. It skips the test where mounting is
// not permitted (not root, or no CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size int) (string, func(size int)) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := func(size int) string { return fmt.Sprintf("size=%d", size) }
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts(size)); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("cannot mount a tmpfs here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir, func(size int) {
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, opts(size)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFullDisk folds into a store on a filesystem too small for the
// bucket. The fold must stall with the store's own error as its reason (not
// a timeout), keep its log of it to a bounded rate, and once the
// filesystem grows resume and catch up with nothing lost.
func TestFullDisk(t *testing.T) {
	plugins := map[string]string{
		"sqlite": testenv.SQLitePlugin(t),
		"pebble": testenv.Binary(t, "plugins/pebble", "slipstream-store-pebble"),
	}
	for _, name := range []string{"sqlite", "pebble"} {
		t.Run(name, func(t *testing.T) {
			disk, resize := smallDisk(t, 4<<20)
			srv := testenv.NATS(t)
			_, js := testenv.JetStream(t, srv.ClientURL())
			kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})

			h := newHarness(t, js, "cfg", nil, filepath.Join(disk, "fold"))
			log := &messages{}
			logger := slog.New(log)
			h.cfg.Logger = logger
			h.cfg.MaxEntries = 100
			h.cfg.RetryMin, h.cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
			bin := plugins[name]
			h.cfg.Launch = func(ctx context.Context) (fold.Handle, error) {
				p, err := pluginhost.Launch(ctx, pluginhost.Config{Path: bin, Logger: logger})
				if err == nil {
					h.mu.Lock()
					h.plugins = append(h.plugins, p)
					h.mu.Unlock()
				}
				return p, err
			}
			h.start()
			ctx := context.Background()
			if _, err := kv.Put(ctx, "first", []byte("1")); err != nil {
				t.Fatal(err)
			}
			_, last := lastSeq(t, js, "cfg")
			h.waitSynced(last)

			// 16 MiB of values for a 4 MiB disk.
			putAll(t, js, "cfg", 4000, "k", strings.Repeat("v", 4<<10))
			_, last = lastSeq(t, js, "cfg")
			var st fold.Status
			testenv.Eventually(t, 60*time.Second, "the fold stalled on the full disk", func() bool {
				st = h.f.Status(ctx)
				return st.State == fold.StateStalled && diskFull(st.Reason)
			})
			t.Logf("stalled at cursor %d of %d: %s", st.Cursor, last, st.Reason)
			if st.Cursor >= last {
				t.Fatalf("cursor %d reached the stream's %d on a full disk", st.Cursor, last)
			}
			// Stalled for a few seconds, the store's repeated error is
			// logged a few times, not per retry of every layer (Pebble
			// retries a failed flush at once and forever).
			// Pebble treats a failed write of its log as fatal: the plugin
			// exits and the host starts another, whose first background
			// error is logged at once. So the bound is per plugin process.
			launches := func() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.plugins) }
			before, bg, started := log.total(), log.count("pebble background error"), launches()
			time.Sleep(3 * time.Second)
			n, nbg, restarts := log.total()-before, log.count("pebble background error")-bg, launches()-started
			t.Logf("in 3 s of the stall: %d log records, %d of them pebble background errors; %d plugin restarts", n, nbg, restarts)
			if nbg > 3+restarts {
				t.Errorf("%d pebble background errors logged in 3 s of a stall on a full disk, by %d plugin processes", nbg, 1+restarts)
			}
			resize(256 << 20)
			h.waitSynced(last)
			diff(t, h.contents(), testenv.Contents(t, kv, ""))
		})
	}
}

func diskFull(reason string) bool {
	return strings.Contains(reason, "no space left on device") || strings.Contains(reason, "database or disk is full")
}

// TestCorruptStoreAtStart overwrites the published generation's database
// with garbage while the fold is down. On start the fold must report the
// store's error with the generation's path and never serve it: reads say
// the fold is not ready, rather than answering from a broken store.
func TestCorruptStoreAtStart(t *testing.T) {
	ctx := context.Background()
	h, _, last, _ := filledBucket(t, 1)
	dir := h.cfg.Dir
	h.start()
	h.waitSynced(last)
	h.stop()

	gen := filepath.Join(dir, "gen-000001")
	db := filepath.Join(gen, "fold.db")
	if err := os.WriteFile(db, []byte(strings.Repeat("not a database ", 512)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"-wal", "-shm"} {
		_ = os.Remove(db + side)
	}
	h2 := newHarness(t, h.js, "cfg", nil, dir)
	h2.start()
	var st fold.Status
	testenv.Eventually(t, 30*time.Second, "the fold stalled on its corrupt store", func() bool {
		st = h2.f.Status(ctx)
		return st.State == fold.StateStalled && strings.Contains(st.Reason, gen)
	})
	if !strings.Contains(st.Reason, "not a database") {
		t.Errorf("reason %q does not say what is wrong with the store", st.Reason)
	}
	if _, err := h2.f.Get(ctx, []byte("a")); !errors.Is(err, fold.ErrNotReady) {
		t.Errorf("a read of the corrupt fold answered %v; want ErrNotReady", err)
	}
	if st.Ready {
		t.Error("a fold whose store is corrupt reports ready")
	}
}
