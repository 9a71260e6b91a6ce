package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/objstore"
	"github.com/slipstreamkv/slipstream/host/service"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// exportTOML is foldTOML with a periodic export every second.
const exportTOML = foldTOML + `[fold.export]
to = "nats-object://snaps/cfg"
every = "1s"
`

// TestPeriodicExport: two nodes export the same fold to one series while
// the bucket changes. The pointer only moves forward and ends at the
// bucket's last revision; the payloads it no longer names are pruned; and a
// third node bootstrapped from the series holds what the stream itself no
// longer does.
func TestPeriodicExport(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	want := map[string]string{}
	put := func(k, v string) uint64 {
		rev, err := kv.Put(ctx, k, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		want[k] = v
		return rev
	}
	for i := range 50 {
		put(fmt.Sprintf("k.%03d", i), "v0")
	}
	opts := service.Options{PublishWindow: time.Second, PruneGrace: 2 * time.Second}
	a := startWith(t, t.TempDir(), srv.ClientURL(), exportTOML, opts)
	b := startWith(t, t.TempDir(), srv.ClientURL(), exportTOML, opts)
	var last uint64
	for round := range 30 {
		last = put(fmt.Sprintf("k.%03d", round%50), fmt.Sprintf("v%d", round+1))
		time.Sleep(100 * time.Millisecond)
	}
	a.waitReady(last)
	b.waitReady(last)

	var reader *objstore.Store
	testenv.Eventually(t, 30*time.Second, "the series' pointer at the bucket's last revision", func() bool {
		if reader == nil {
			reader, _ = objstore.Bind(ctx, js, "snaps", objstore.Options{})
			if reader == nil {
				return false
			}
		}
		p, err := reader.Latest(ctx, "cfg")
		return err == nil && p.Cursor == last
	})
	ptrs, err := js.KeyValue(ctx, "snaps_pointers")
	if err != nil {
		t.Fatal(err)
	}
	hist, err := ptrs.History(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	var cursors []uint64
	for _, e := range hist {
		var p struct{ Cursor uint64 }
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			t.Fatal(err)
		}
		cursors = append(cursors, p.Cursor)
	}
	if !slices.IsSorted(cursors) || len(slices.Compact(slices.Clone(cursors))) != len(cursors) {
		t.Errorf("the pointer's cursors %v do not only move forward", cursors)
	}

	obs, err := js.ObjectStore(ctx, "snaps")
	if err != nil {
		t.Fatal(err)
	}
	var objects []string
	testenv.Eventually(t, 30*time.Second, "the payloads pruned down to the one the pointer names", func() bool {
		p, err := reader.Latest(ctx, "cfg")
		if err != nil {
			return false
		}
		infos, err := obs.List(ctx)
		objects = objects[:0]
		for _, o := range infos {
			objects = append(objects, o.Name)
		}
		return err == nil && len(objects) == 1 && objects[0] == p.Object
	})

	// The stream loses everything up to the pointer's cursor; a node that
	// bootstraps from the series still holds all of it.
	stream, err := js.Stream(ctx, "KV_cfg")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(last+1)); err != nil {
		t.Fatal(err)
	}
	put("after", "purge")
	c := start(t, t.TempDir(), srv.ClientURL(), foldTOML+`bootstrap_from = "nats-object://snaps/cfg"`+"\n")
	c.waitReady(last + 1)
	equal(t, c.contents(), want)
}
