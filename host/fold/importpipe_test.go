package fold_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// TestImportInManyBatches imports an artifact cut into many batches, down
// the store's pipe and one Apply at a time: both folds hold the bucket at
// the artifact's cursor, resume from it, and end equal to the bucket.
func TestImportInManyBatches(t *testing.T) {
	js, kv, w, last := writtenBucket(t, jetstream.KeyValueConfig{Bucket: "cfg"}, 300)
	ctx := context.Background()
	buf, m := exportOf(t, js, last)
	w.put(t, kv, "k00007", "tail")
	_, last = lastSeq(t, js, "cfg")
	defer fold.SetImportBatch(7)()

	for _, piped := range []bool{true, false} {
		name := map[bool]string{true: "piped", false: "one Apply at a time"}[piped]
		t.Run(name, func(t *testing.T) {
			b := newHarness(t, js, "cfg", nil, t.TempDir())
			var sent atomic.Int32
			b.wrapLaunch(func(p *pluginhost.Plugin) fold.Handle {
				if !piped {
					return withoutPipe{p}
				}
				return countingPiper{p, &sent}
			})
			b.f = fold.New(b.cfg, js)
			got, err := b.f.Import(ctx, bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if got.Records != 300 || got.Cursor != m.Cursor || got.ContentHash != m.ContentHash {
				t.Errorf("imported %d records at cursor %d (hash %s), want 300 at %d (%s)",
					got.Records, got.Cursor, got.ContentHash, m.Cursor, m.ContentHash)
			}
			// 300 records in batches of 7: 43 batches, the last of them
			// with the artifact's cursor.
			if n := sent.Load(); piped && n != 43 {
				t.Errorf("%d batches went down the pipe, want 43", n)
			}
			b.run()
			b.waitSynced(last)
			diff(t, b.contents(), testenv.Contents(t, kv, ""))
		})
	}
}

// failingPiper is a plugin whose pipes refuse the batch after the first
// ok ones.
type failingPiper struct {
	*pluginhost.Plugin
	ok int32
}

func (f failingPiper) Pipe(ctx context.Context) (pluginhost.BatchPipe, error) {
	p, err := f.Plugin.Pipe(ctx)
	if err != nil {
		return nil, err
	}
	return &failingPipe{BatchPipe: p, ok: f.ok}, nil
}

type failingPipe struct {
	pluginhost.BatchPipe
	ok   int32
	sent int32
}

func (f *failingPipe) Send(b *sdk.Batch) error {
	if f.sent++; f.sent > f.ok {
		return errors.New("injected send failure")
	}
	return f.BatchPipe.Send(b)
}

// TestImportFailingLateLeavesTheFoldUntouched: an artifact found damaged
// after many of its batches were applied, and a store that fails midway,
// leave the published generation exactly as it was, and the fold resumes
// from it.
func TestImportFailingLateLeavesTheFoldUntouched(t *testing.T) {
	js, kv, _, last := writtenBucket(t, jetstream.KeyValueConfig{Bucket: "cfg"}, 400)
	ctx := context.Background()
	dir := t.TempDir()
	h := newHarness(t, js, "cfg", nil, dir)
	h.start()
	h.waitSynced(last)
	var buf bytes.Buffer
	if _, err := h.f.Export(ctx, &buf, "test"); err != nil {
		t.Fatal(err)
	}
	h.stop()
	good := buf.Bytes()
	defer fold.SetImportBatch(5)()

	// The trailer is in the last 200 bytes: every chunk was read, and
	// every batch but the last applied, when the damage shows.
	late := slices.Clone(good)
	late[len(late)-60] ^= 0x40
	cases := []struct {
		name string
		raw  []byte
		fail bool // the store fails on the 10th batch
		want error
	}{
		{name: "damaged trailer", raw: late, want: artifact.ErrCorrupt},
		{name: "truncated before the end frame", raw: good[:len(good)-5], want: artifact.ErrTruncated},
		{name: "store fails midway", raw: good, fail: true},
	}
	before := tree(t, dir)
	for _, c := range cases {
		var launched atomic.Int32
		cfg := h.cfg
		launch := cfg.Launch
		cfg.Launch = func(ctx context.Context) (fold.Handle, error) {
			hd, err := launch(ctx)
			if err != nil || !c.fail {
				return hd, err
			}
			launched.Add(1)
			return failingPiper{hd.(*pluginhost.Plugin), 9}, nil
		}
		f := fold.New(cfg, js)
		_, err := f.Import(ctx, bytes.NewReader(c.raw))
		switch {
		case err == nil:
			t.Errorf("%s: the import succeeded", c.name)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		case c.fail && !strings.Contains(err.Error(), "store apply"):
			t.Errorf("%s: %v, want a store apply error", c.name, err)
		}
		if c.fail && launched.Load() == 0 {
			t.Errorf("%s: no failing store was launched", c.name)
		}
		if after := tree(t, dir); !maps.Equal(before, after) {
			t.Errorf("%s: the fold directory changed: %v, was %v", c.name, after, before)
		}
	}
	h.start()
	h.waitSynced(last)
	if got, want := h.contents(), testenv.Contents(t, kv, ""); !maps.Equal(got, want) {
		t.Errorf("after the failed imports the fold holds %d keys, the bucket %d", len(got), len(want))
	}
	if st := h.f.Status(ctx); st.Generation != 1 {
		t.Errorf("generation %d after the failed imports, want 1", st.Generation)
	}
}
