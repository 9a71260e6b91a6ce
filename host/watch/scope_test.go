package watch

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// TestFirstInScope: the direct read behind a bookmark finds the first
// message of the watch's scope from a sequence on, past messages out of
// scope, with and without key filters, and nothing past the last.
func TestFirstInScope(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "b", History: 8})
	ctx := context.Background()
	seq := map[string]uint64{}
	for _, k := range []string{"a.1", "x.1", "x.2", "b.1", "x.3"} {
		rev, err := kv.Put(ctx, k, []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		seq[k] = rev
	}
	for _, c := range []struct {
		filters []string
		from    uint64
		want    uint64
	}{
		{nil, 1, seq["a.1"]},
		{nil, seq["x.2"], seq["x.2"]},
		{nil, seq["x.3"] + 1, 0},
		{[]string{"a.>", "b.>"}, 1, seq["a.1"]},
		{[]string{"a.>", "b.>"}, seq["a.1"] + 1, seq["b.1"]},
		{[]string{"b.>", "a.>"}, seq["a.1"] + 1, seq["b.1"]},
		{[]string{"a.>", "b.>"}, seq["b.1"] + 1, 0},
		{[]string{"x.2"}, 1, seq["x.2"]},
	} {
		w, err := Start(ctx, js, Config{Bucket: "b", Filters: c.filters})
		if err != nil {
			t.Fatal(err)
		}
		got, err := w.firstInScope(ctx, c.from)
		w.Stop()
		if err != nil || got != c.want {
			t.Errorf("filters %v, from %d: first in scope %d (%v), want %d", c.filters, c.from, got, err, c.want)
		}
	}
}
