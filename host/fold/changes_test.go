package fold_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/api"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/testenv"
	"github.com/slipstreamkv/slipstream/sdk"
)

// TestChangesResumeExactlyOnce: a subscriber that drops its subscription
// every few changes and subscribes again from the last position it was
// given, while writes go on, receives every change under its prefix
// exactly once, in revision order, and none outside it. (The bucket keeps
// a history: with History 1, NATS drops a value as soon as its key is
// written again, and a value overwritten before the fold read it is never
// delivered to anyone.)
func TestChangesResumeExactlyOnce(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg", History: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := kv.Put(ctx, "k.seed", []byte("x")); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, js, "cfg", nil, t.TempDir())
	h.start()
	h.waitSynced(1)

	c, err := h.f.Watch(fold.Position{}, []byte("k."))
	if err != nil {
		t.Fatal(err)
	}
	const writes = 400
	type written struct {
		want map[uint64]string // revision -> key, under the prefix
		last uint64
	}
	wrote := make(chan written, 1)
	go func() {
		w := written{want: map[uint64]string{}}
		defer func() { wrote <- w }()
		for i := range writes {
			key := fmt.Sprintf("k.%d", i%37)
			if i%5 == 0 {
				key = fmt.Sprintf("other.%d", i)
			}
			var rev uint64
			var err error
			if i%11 == 0 {
				err = kv.Delete(ctx, key)
				if err == nil {
					rev = lastRevision(ctx, t, js)
				}
			} else {
				rev, err = kv.Put(ctx, key, fmt.Appendf(nil, "v%d", i))
			}
			if err != nil {
				t.Error(err)
				return
			}
			if strings.HasPrefix(key, "k.") {
				w.want[rev] = key
			}
			w.last = rev
		}
	}()

	got := map[uint64]string{}
	var last uint64
	var at fold.Position
	var done *written
	for resumes := 0; ; {
		cs, pos, err := c.Next(ctx, 200*time.Millisecond)
		if err != nil {
			t.Fatalf("after %d changes: %v", len(got), err)
		}
		at = pos
		for _, ch := range cs {
			if ch.Revision <= last {
				t.Fatalf("change %s at revision %d after revision %d", ch.Key, ch.Revision, last)
			}
			last = ch.Revision
			if !strings.HasPrefix(string(ch.Key), "k.") {
				t.Fatalf("change of %s outside the prefix", ch.Key)
			}
			got[ch.Revision] = string(ch.Key)
		}
		if done == nil {
			select {
			case w := <-wrote:
				done = &w
			default:
			}
		}
		if done != nil && len(cs) == 0 && at.Cursor >= done.last {
			t.Logf("%d changes received over %d subscriptions", len(got), resumes+1)
			break
		}
		if len(cs) > 0 && len(got)%7 < len(cs) {
			c.Close()
			resumes++
			if c, err = h.f.Watch(at, []byte("k.")); err != nil {
				t.Fatalf("resume at %s: %v", at, err)
			}
		}
	}
	want := done.want
	c.Close()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %d changes, wrote %d under the prefix:\n got  %v\n want %v", len(got), len(want), got, want)
	}
}

// lastRevision is the stream's last sequence: the revision of the write
// just made, with one writer.
func lastRevision(ctx context.Context, t *testing.T, js jetstream.JetStream) uint64 {
	s, err := js.Stream(ctx, "KV_cfg")
	if err == nil {
		var info *jetstream.StreamInfo
		if info, err = s.Info(ctx); err == nil {
			return info.State.LastSeq
		}
	}
	t.Error(err)
	return 0
}

// TestChangesReset: a subscriber that falls behind the changes the fold
// holds, one whose fold stops, and one resuming at a position of a
// generation a rebuild replaced are each told to start over, never served
// with a gap.
func TestChangesReset(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	putAll(t, js, "cfg", 10, "k.", "v")
	h := newHarness(t, js, "cfg", nil, t.TempDir())
	h.cfg.ChangeBuffer = 4 << 10
	h.start()
	st := h.waitSynced(10)

	slow, err := h.f.Watch(fold.Position{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, js, "cfg", 200, "k.", strings.Repeat("v", 100))
	h.waitSynced(210)
	if _, _, err := slow.Next(ctx, time.Second); !errors.Is(err, fold.ErrReset) || !strings.Contains(err.Error(), "fell behind") {
		t.Fatalf("a subscriber behind the changes held: %v, want a reset", err)
	}
	if _, err := h.f.Watch(fold.Position{Generation: st.Generation, Cursor: 10}, nil); !errors.Is(err, fold.ErrReset) {
		t.Fatalf("a resume older than the changes held: %v, want a reset", err)
	}

	at, err := h.f.Position()
	if err != nil {
		t.Fatal(err)
	}
	live, err := h.f.Watch(at, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.stop()
	if _, _, err := live.Next(ctx, time.Second); !errors.Is(err, fold.ErrReset) {
		t.Fatalf("a subscriber of a stopped fold: %v, want a reset", err)
	}

	// The stream loses the fold's cursor: the restarted fold rebuilds into
	// another generation, and a position of the old one is refused.
	for _, k := range []string{"k.lost", "k.after"} {
		if _, err := kv.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := js.Stream(ctx, "KV_cfg")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(at.Cursor+2)); err != nil {
		t.Fatal(err)
	}
	h.start()
	st2 := h.waitSynced(at.Cursor + 2)
	if st2.Generation == at.Generation {
		t.Fatalf("no rebuild after the purge (generation %d)", st2.Generation)
	}
	if _, err := h.f.Watch(at, nil); !errors.Is(err, fold.ErrReset) || !strings.Contains(err.Error(), "generation") {
		t.Fatalf("a resume at %s after a rebuild into generation %d: %v, want a reset", at, st2.Generation, err)
	}
	e, pos, err := h.f.Lookup(ctx, []byte("k.after"))
	if err != nil || string(e.Value) != "x" || pos.Generation != st2.Generation {
		t.Fatalf("Lookup after the rebuild: %q at %s, %v", e.Value, pos, err)
	}
}

// TestWaitFor: a read that waits for a revision written to the bucket
// returns once the fold has committed it, and sees the write.
func TestWaitFor(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	putAll(t, js, "cfg", 5, "k.", "old")
	h := newHarness(t, js, "cfg", nil, t.TempDir())
	h.start()
	h.waitSynced(5)
	for i := range 50 {
		// The cache holds the key from the previous round's read.
		rev, err := kv.Put(ctx, "k.0", fmt.Appendf(nil, "new%d", i))
		if err != nil {
			t.Fatal(err)
		}
		at, err := h.f.WaitFor(ctx, rev)
		if err != nil || at.Cursor < rev {
			t.Fatalf("WaitFor(%d): %s, %v", rev, at, err)
		}
		e, pos, err := h.f.Lookup(ctx, []byte("k.0"))
		if err != nil || string(e.Value) != fmt.Sprintf("new%d", i) || e.Revision != rev || pos.Cursor < rev {
			t.Fatalf("read after WaitFor(%d): %q revision %d at %s, %v", rev, e.Value, e.Revision, pos, err)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if at, err := h.f.WaitFor(short, 1<<40); !errors.Is(err, context.DeadlineExceeded) || at.Cursor < 55 {
		t.Fatalf("WaitFor a revision never written: %s, %v", at, err)
	}
	if _, _, err := h.f.Lookup(ctx, []byte("k.none")); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Lookup of an absent key: %v", err)
	}
}

// TestHTTPReads: the API's read answers carry their position, min_cursor
// waits for a write (and answers 504 past wait=), batchGet answers in
// order, and the change stream sends its events, refuses a bare cursor and
// resets a position of another generation.
func TestHTTPReads(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	putAll(t, js, "cfg", 3, "k.", "v")
	h := newHarness(t, js, "cfg", nil, t.TempDir())
	h.start()
	st := h.waitSynced(3)
	web := httptest.NewServer(api.Handler([]*fold.Fold{h.f}, prometheus.NewRegistry(), api.Options{}))
	defer web.Close()
	base := web.URL + "/v1/folds/test"

	resp := do(t, http.MethodGet, base+"/keys/k.000001", "")
	if resp.code != 200 || resp.body != "v1" || resp.header.Get(api.GenerationHeader) != fmt.Sprint(st.Generation) || resp.header.Get(api.CursorHeader) != "3" {
		t.Fatalf("GET: %+v", resp)
	}
	rev, err := kv.Put(ctx, "k.000001", []byte("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if resp := do(t, http.MethodGet, fmt.Sprintf("%s/keys/k.000001?min_cursor=%d&wait=10s", base, rev), ""); resp.code != 200 || resp.body != "mine" {
		t.Fatalf("read your write: %+v", resp)
	}
	if resp := do(t, http.MethodGet, base+"/keys/k.000001?min_cursor=999&wait=100ms", ""); resp.code != http.StatusGatewayTimeout || !strings.Contains(resp.body, `"cursor": 4`) {
		t.Fatalf("min_cursor never reached: %+v", resp)
	}
	if resp := do(t, http.MethodGet, base+"/keys/k.000001?wait=1s", ""); resp.code != http.StatusBadRequest {
		t.Fatalf("wait without min_cursor: %+v", resp)
	}
	resp = do(t, http.MethodPost, base+"/keys:batchGet", `{"keys":["k.000002","nope","k.000001"]}`)
	var batch api.BatchResult
	if err := json.Unmarshal([]byte(resp.body), &batch); err != nil || resp.code != 200 || len(batch.Entries) != 3 ||
		*batch.Entries[0].Value != "v2" || *batch.Entries[1].Found || *batch.Entries[2].Value != "mine" || batch.Cursor != 4 {
		t.Fatalf("batchGet: %+v", resp)
	}

	if resp := do(t, http.MethodGet, base+"/watch?from=4", ""); resp.code != http.StatusBadRequest {
		t.Fatalf("watch from a bare cursor: %+v", resp)
	}
	resp = do(t, http.MethodGet, base+"/watch?from=99.1", "")
	if resp.code != 200 || !strings.HasPrefix(resp.body, "event: reset\ndata: ") || !strings.Contains(resp.body, "generation 99") {
		t.Fatalf("watch from another generation: %+v", resp)
	}

	// A stream from the position before the write sends the write, then
	// bookmarks.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/watch?bookmark=100ms", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Last-Event-ID", fmt.Sprintf("%d.3", st.Generation))
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	var got []string
	buf := make([]byte, 4096)
	testenv.Eventually(t, 10*time.Second, "the put and a later bookmark on the stream", func() bool {
		n, err := stream.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(buf[:n]))
		all := strings.Join(got, "")
		return strings.Contains(all, fmt.Sprintf("event: put\nid: %d.4\ndata: {\"key\":\"k.000001\",\"revision\":4,\"value\":\"mine\"}", st.Generation)) &&
			strings.Count(all, "event: bookmark") >= 2
	})
	if all := strings.Join(got, ""); !strings.HasPrefix(all, fmt.Sprintf("event: bookmark\nid: %d.3\n", st.Generation)) {
		t.Fatalf("the stream does not start at its position:\n%s", all)
	}
}

type answer struct {
	code   int
	body   string
	header http.Header
}

func do(t *testing.T, method, url, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, string(b), resp.Header}
}
