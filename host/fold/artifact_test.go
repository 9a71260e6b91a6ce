package fold_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// written is what a test put into a bucket: every value of every key, with
// the revision that wrote it, so that the bucket at any cursor is known.
type written struct {
	mu  sync.Mutex
	log []write
}

type write struct {
	key, value string
	rev        uint64
	del        bool
}

func (w *written) put(t *testing.T, kv jetstream.KeyValue, key, value string) {
	rev, err := kv.Put(context.Background(), key, []byte(value))
	if err != nil {
		t.Error(err)
		return
	}
	w.mu.Lock()
	w.log = append(w.log, write{key: key, value: value, rev: rev})
	w.mu.Unlock()
}

// del deletes key; the test makes no other write meanwhile, so the
// stream's last sequence is the delete's revision.
func (w *written) del(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue, key string) {
	if err := kv.Delete(context.Background(), key); err != nil {
		t.Error(err)
		return
	}
	_, rev := lastSeq(t, js, kv.Bucket())
	w.mu.Lock()
	w.log = append(w.log, write{key: key, rev: rev, del: true})
	w.mu.Unlock()
}

// at is the bucket's contents at cursor, as key -> value@revision.
func (w *written) at(cursor uint64) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	log := slices.Clone(w.log)
	slices.SortStableFunc(log, func(a, b write) int { return cmp.Compare(a.rev, b.rev) })
	out := map[string]string{}
	for _, x := range log {
		switch {
		case x.rev > cursor:
		case x.del:
			delete(out, x.key)
		default:
			out[x.key] = fmt.Sprintf("%s@%d", x.value, x.rev)
		}
	}
	return out
}

// after counts the writes whose revision is above cursor.
func (w *written) after(cursor uint64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, x := range w.log {
		if x.rev > cursor {
			n++
		}
	}
	return n
}

// withRevisions reads a fold's published generation as key ->
// value@revision.
func (h *harness) withRevisions() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	err := h.f.Scan(context.Background(), sdk.Range{}, func(e sdk.Entry) error {
		out[string(e.Key)] = fmt.Sprintf("%s@%d", e.Value, e.Revision)
		return nil
	})
	if err != nil {
		h.t.Fatalf("scan fold: %v", err)
	}
	return out
}

// writtenBucket fills a new bucket on a new server with n keys k00000...,
// recording the writes, and returns the stream's last sequence.
func writtenBucket(t *testing.T, cfg jetstream.KeyValueConfig, n int) (jetstream.JetStream, jetstream.KeyValue, *written, uint64) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, cfg)
	w := &written{}
	for i := range n {
		w.put(t, kv, fmt.Sprintf("k%05d", i), "v")
	}
	_, last := lastSeq(t, js, cfg.Bucket)
	return js, kv, w, last
}

// exportDuringWrites exports f while a writer overwrites keys k00000 to
// k<n-1>, every step-th, recording the writes in w.
func exportDuringWrites(t *testing.T, f *fold.Fold, kv jetstream.KeyValue, w *written, n, step int) (*bytes.Buffer, artifact.Manifest, error) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			w.put(t, kv, fmt.Sprintf("k%05d", (i*step)%n), fmt.Sprint("during", i))
		}
	})
	time.Sleep(50 * time.Millisecond) // the writer is under way
	var buf bytes.Buffer
	m, err := f.Export(context.Background(), &buf, "test")
	close(stop)
	wg.Wait()
	return &buf, m, err
}

// records reads an artifact whole, as key -> value@revision.
func records(t *testing.T, raw []byte) (artifact.Manifest, map[string]string) {
	t.Helper()
	r, err := artifact.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return r.Manifest(), out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[string(rec.Key)] = fmt.Sprintf("%s@%d", rec.Value, rec.Revision)
	}
}

func pebblePlugin(t *testing.T) string {
	return testenv.Binary(t, "plugins/pebble", "slipstream-store-pebble")
}

// TestBootstrapFromArtifact: a fold exported while writes go on is the
// bucket at the manifest's cursor; a second fold, of the other backend,
// bootstrapped from it after retention dropped everything before that
// cursor, receives exactly the updates after it and ends equal to the
// bucket.
func TestBootstrapFromArtifact(t *testing.T) {
	for _, dir := range []struct{ name, from, to string }{{"sqlite to pebble", "sqlite", "pebble"}, {"pebble to sqlite", "pebble", "sqlite"}} {
		t.Run(dir.name, func(t *testing.T) {
			bins := map[string]string{"sqlite": testenv.SQLitePlugin(t), "pebble": pebblePlugin(t)}
			// Every value is kept, so that the stream holds every update
			// after the artifact's cursor once the purge below has dropped
			// what came before it.
			js, kv, w, last := writtenBucket(t, jetstream.KeyValueConfig{Bucket: "cfg", History: 64}, 1500)
			ctx := context.Background()

			a := newHarness(t, js, "cfg", nil, t.TempDir())
			a.usePlugin(bins[dir.from])
			a.start()
			a.waitSynced(last)

			// Export while a writer overwrites keys.
			buf, m, err := exportDuringWrites(t, a.f, kv, w, 1500, 7)
			if err != nil {
				t.Fatal(err)
			}
			got, recs := records(t, buf.Bytes())
			if got.ContentHash != m.ContentHash || got.Cursor != m.Cursor || got.Records != 1500 || got.Bucket != "cfg" {
				t.Fatalf("manifest %+v, read back %+v", m, got)
			}
			diff(t, recs, w.at(m.Cursor))
			a.stop()

			// The tail: writes after the export, then retention drops
			// everything up to the artifact's cursor.
			for i := range 30 {
				w.put(t, kv, fmt.Sprintf("k%05d", i), "tail")
			}
			for i := range 5 {
				w.del(t, js, kv, fmt.Sprintf("k%05d", 1000+i))
			}
			tail := w.after(m.Cursor)
			s, err := js.Stream(ctx, "KV_cfg")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Purge(ctx, jetstream.WithPurgeSequence(m.Cursor+1)); err != nil {
				t.Fatal(err)
			}
			if first, _ := lastSeq(t, js, "cfg"); first != m.Cursor+1 {
				t.Fatalf("stream first sequence %d after the purge, want %d", first, m.Cursor+1)
			}
			_, last = lastSeq(t, js, "cfg")

			c := &counter{}
			log := &messages{}
			b := newHarness(t, js, "cfg", nil, t.TempDir())
			b.usePlugin(bins[dir.to])
			b.cfg.Transform = c
			b.cfg.Logger = slog.New(log)
			raw := buf.Bytes()
			b.cfg.BootstrapName = "memory"
			b.cfg.Bootstrap = func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(raw)), nil
			}
			b.start()
			st := b.waitSynced(last)
			if n := c.n.Load(); n != int64(tail) {
				t.Errorf("bootstrapped fold received %d updates from the stream, want exactly the %d after the artifact's cursor", n, tail)
			}
			if st.Generation != 1 || log.count("imported an artifact") != 1 {
				t.Errorf("generation %d, %d imports: want the artifact imported into generation 1", st.Generation, log.count("imported an artifact"))
			}
			// The purge took from the bucket the keys last written before
			// the cursor; the fold still holds them, as it must.
			diff(t, b.withRevisions(), w.at(last))
		})
	}
}

// TestImportRefusesAndLeavesTheFoldUntouched: each damaged or foreign
// artifact is refused with an error saying why, and the fold directory is
// byte-for-byte what it was.
func TestImportRefusesAndLeavesTheFoldUntouched(t *testing.T) {
	js, kv, w, last := writtenBucket(t, jetstream.KeyValueConfig{Bucket: "cfg"}, 300)
	testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "other"})
	ctx := context.Background()
	dir := t.TempDir()
	h := newHarness(t, js, "cfg", nil, dir)
	h.start()
	h.waitSynced(last)
	var buf bytes.Buffer
	m, err := h.f.Export(ctx, &buf, "test")
	if err != nil {
		t.Fatal(err)
	}
	h.stop()
	good := buf.Bytes()

	// reexport writes the artifact's records under another header.
	reexport := func(edit func(*artifact.Manifest)) []byte {
		r, err := artifact.NewReader(bytes.NewReader(good))
		if err != nil {
			t.Fatal(err)
		}
		head := r.Manifest()
		edit(&head)
		var out bytes.Buffer
		aw, err := artifact.NewWriter(&out, head)
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := aw.Add(rec); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := aw.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	flip := func(at int) []byte {
		b := slices.Clone(good)
		b[at] ^= 0x40
		return b
	}
	headerAt := bytes.Index(good, []byte(`"bucket":"cfg"`))
	cases := []struct {
		name, art string
		raw       []byte
		want      error
		says      string
	}{
		{name: "tampered payload", raw: flip(len(good) / 2), want: artifact.ErrCorrupt},
		{name: "tampered manifest", raw: flip(headerAt + 10), want: artifact.ErrCorrupt, says: "header"},
		{name: "truncated", raw: good[:len(good)*2/3], want: artifact.ErrTruncated},
		{name: "wrong bucket", raw: reexport(func(h *artifact.Manifest) { h.Bucket = "other" }), want: fold.ErrArtifactRefused, says: "bucket"},
		{name: "recreated stream", raw: reexport(func(h *artifact.Manifest) { h.StreamCreated = h.StreamCreated.Add(-time.Hour) }),
			want: fold.ErrArtifactRefused, says: "stream identity"},
		{name: "other scope", raw: reexport(func(h *artifact.Manifest) { h.Filters = []string{"k0.>"} }), want: fold.ErrArtifactRefused, says: "scope"},
		{name: "other transforms", raw: reexport(func(h *artifact.Manifest) { h.TransformDigest = "sha256:00" }), want: fold.ErrArtifactRefused, says: "transform"},
		{name: "cursor past the stream", raw: reexport(func(h *artifact.Manifest) { h.Cursor = last + 100 }), want: fold.ErrArtifactRefused, says: "past the stream"},
		{name: "not an artifact", raw: []byte("hello"), want: artifact.ErrNotArtifact},
	}
	before := tree(t, dir)
	for _, c := range cases {
		f := fold.New(h.cfg, js)
		_, err := f.Import(ctx, bytes.NewReader(c.raw))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %v saying %q", c.name, err, c.want, c.says)
		}
		if after := tree(t, dir); !maps.Equal(before, after) {
			t.Errorf("%s: the fold directory changed: %v, was %v", c.name, after, before)
		}
	}

	// Retention passes the cursor: the same artifact is now refused.
	for i := range 10 {
		w.put(t, kv, fmt.Sprintf("k%05d", i), "later")
	}
	s, err := js.Stream(ctx, "KV_cfg")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(m.Cursor+5)); err != nil {
		t.Fatal(err)
	}
	f := fold.New(h.cfg, js)
	if _, err := f.Import(ctx, bytes.NewReader(good)); !errors.Is(err, fold.ErrArtifactRefused) || !strings.Contains(err.Error(), "can no longer continue") {
		t.Errorf("expired cursor: %v", err)
	}
	if after := tree(t, dir); !maps.Equal(before, after) {
		t.Errorf("expired cursor: the fold directory changed")
	}
}

// TestOfflineImportResumesAtTheCursor: Import publishes a generation that
// the next Run resumes from the artifact's cursor.
func TestOfflineImportResumesAtTheCursor(t *testing.T) {
	js, kv, w, last := writtenBucket(t, jetstream.KeyValueConfig{Bucket: "cfg"}, 400)
	ctx := context.Background()
	buf, m := exportOf(t, js, last)
	for i := range 20 {
		w.put(t, kv, fmt.Sprintf("n%05d", i), "tail")
	}
	_, last = lastSeq(t, js, "cfg")

	b := newHarness(t, js, "cfg", nil, t.TempDir())
	b.usePlugin(pebblePlugin(t))
	c := &counter{}
	b.cfg.Transform = c
	// The fold that imported is the one that runs: Import leaves nothing
	// of its own open.
	log := &messages{}
	b.cfg.Logger = slog.New(log)
	b.f = fold.New(b.cfg, js)
	if _, err := b.f.Import(ctx, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	b.run()
	st := b.waitSynced(last)
	if n := log.count("store plugin died; restarting it"); n != 0 {
		t.Errorf("Run found the import's closed plugin as the published generation's (%d restarts)", n)
	}
	if c.n.Load() != 20 || st.Generation != 1 {
		t.Errorf("after the import: %d updates from the stream (want 20), generation %d (want 1), cursor was %d", c.n.Load(), st.Generation, m.Cursor)
	}
	diff(t, b.contents(), testenv.Contents(t, kv, ""))
}

// tree hashes every file under dir.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// noViews is a plugin whose store offers no consistent views. Its scans
// start late, so that an apply let through during an export would land
// between the cursor the export took and what it reads.
type noViews struct{ *pluginhost.Plugin }

func (noViews) Snapshotter() (sdk.Snapshotter, bool) { return nil, false }

func (p noViews) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	time.Sleep(300 * time.Millisecond)
	return p.Plugin.Scan(ctx, r, fn)
}

// TestExportWithoutViews: a store without views is exported with the
// fold's applies paused, and the artifact is still the bucket at its
// cursor while writes go on.
func TestExportWithoutViews(t *testing.T) {
	js, kv, w, last := writtenBucket(t, jetstream.KeyValueConfig{Bucket: "cfg"}, 2000)
	log := &messages{}
	h := newHarness(t, js, "cfg", nil, t.TempDir())
	h.cfg.Logger = slog.New(log)
	h.wrapLaunch(func(p *pluginhost.Plugin) fold.Handle { return noViews{p} })
	h.start()
	h.waitSynced(last)
	buf, m, err := exportDuringWrites(t, h.f, kv, w, 2000, 13)
	if err != nil {
		t.Fatal(err)
	}
	_, recs := records(t, buf.Bytes())
	diff(t, recs, w.at(m.Cursor))
	if log.count("the store has no consistent views; applies pause while it is exported") != 1 {
		t.Error("the export did not take the paused path")
	}
	_, last = lastSeq(t, js, "cfg")
	h.waitSynced(last) // applies resumed
}

// exportOf runs a fold of bucket cfg until it holds last, exports it, and
// stops it.
func exportOf(t *testing.T, js jetstream.JetStream, last uint64) (*bytes.Buffer, artifact.Manifest) {
	t.Helper()
	a := newHarness(t, js, "cfg", nil, t.TempDir())
	a.start()
	a.waitSynced(last)
	var buf bytes.Buffer
	m, err := a.f.Export(context.Background(), &buf, "test")
	if err != nil {
		t.Fatal(err)
	}
	a.stop()
	return &buf, m
}
