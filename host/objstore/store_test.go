package objstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// A published artifact opens byte for byte, with its pointer.
func TestPublishOpenRoundTrip(t *testing.T) {
	url := server(t)
	tmp := t.TempDir()
	s, _ := node(t, url, "snaps", Options{TempDir: tmp, Exporter: "node-a"})
	ctx := ctxT(t)

	if _, _, err := s.Open(ctx, "orders"); !errors.Is(err, ErrNoArtifact) {
		t.Fatalf("Open before any publish: %v, want ErrNoArtifact", err)
	}
	if _, err := s.Latest(ctx, "orders"); !errors.Is(err, ErrNoArtifact) {
		t.Fatalf("Latest before any publish: %v, want ErrNoArtifact", err)
	}
	var written []byte
	// About 1.2 MB of incompressible values: several Object Store chunks.
	p, err := s.Publish(ctx, "orders", export(42, 300, 4000, 1, &written))
	if err != nil {
		t.Fatal(err)
	}
	emptyDir(t, tmp)
	if !isPayload("orders", p.Object) || p.Cursor != 42 || p.Records != 300 || p.Size != uint64(len(written)) ||
		p.Exporter != "node-a" || p.Revision == 0 || p.Previous != "" || p.Stream != "KV_orders" ||
		!p.StreamCreated.Equal(testStreamCreated) || p.Producer != "objstore-test" {
		t.Fatalf("published pointer %+v", p)
	}
	got, opened := readAll(t, s, "orders")
	if !bytes.Equal(got, written) {
		t.Fatalf("opened %d bytes, published %d, not the same", len(got), len(written))
	}
	if opened.Object != p.Object || opened.Revision != p.Revision || opened.Published.IsZero() {
		t.Fatalf("Open's pointer %+v, published %+v", opened, p)
	}
	latest, err := s.Latest(ctx, "orders")
	if err != nil || latest.Object != p.Object {
		t.Fatalf("Latest = %+v, %v", latest, err)
	}
	// Another node reads it as well.
	other, _ := node(t, url, "snaps", Options{})
	if got, _ := readAll(t, other, "orders"); !bytes.Equal(got, written) {
		t.Fatal("another node opened other bytes")
	}
	if got := objects(t, s); !slices.Equal(got, []string{p.Object}) {
		t.Fatalf("the bucket holds %v", got)
	}
}

// Publishing what is published changes nothing; the same cursor with other
// content is superseded; both leave no payload behind.
func TestPublishSameCursor(t *testing.T) {
	s, _ := node(t, server(t), "snaps", Options{})
	ctx := ctxT(t)
	first, err := s.Publish(ctx, "orders", export(10, 5, 10, 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	// Same records and cursor, another creation time: other bytes.
	again, err := s.Publish(ctx, "orders", export(10, 5, 10, 1, nil))
	if err != nil {
		t.Fatalf("publishing the same cursor and content again: %v", err)
	}
	if again.Object != first.Object || again.Revision != first.Revision {
		t.Fatalf("the pointer moved to %+v", again)
	}
	_, err = s.Publish(ctx, "orders", export(10, 5, 10, 2, nil))
	if !errors.Is(err, ErrSuperseded) || !strings.Contains(err.Error(), "cursor 10 with content") {
		t.Fatalf("the same cursor with other content: %v, want ErrSuperseded", err)
	}
	if got := objects(t, s); !slices.Equal(got, []string{first.Object}) {
		t.Fatalf("the bucket holds %v, want only %s", got, first.Object)
	}
}

// Two exporters race, the slower one behind: the pointer never goes back,
// the slow one learns it was superseded and removes its payload.
func TestSlowExporterSuperseded(t *testing.T) {
	url := server(t)
	fast, _ := node(t, url, "snaps", Options{Exporter: "fast"})
	slow, _ := node(t, url, "snaps", Options{Exporter: "slow"})
	ctx := ctxT(t)

	fastDone := make(chan struct{})
	var wg sync.WaitGroup
	var fastPtr Pointer
	var fastErr, slowErr error
	wg.Go(func() {
		defer close(fastDone)
		fastPtr, fastErr = fast.Publish(ctx, "orders", export(20, 50, 100, 1, nil))
	})
	wg.Go(func() {
		// The slow exporter read its fold at cursor 10 and writes it while
		// the fast one, at cursor 20, publishes.
		write := export(10, 50, 100, 2, nil)
		_, slowErr = slow.Publish(ctx, "orders", func(w io.Writer) (artifact.Manifest, error) {
			<-fastDone
			return write(w)
		})
	})
	wg.Wait()
	if fastErr != nil {
		t.Fatal(fastErr)
	}
	var se *SupersededError
	if !errors.As(slowErr, &se) || !errors.Is(slowErr, ErrSuperseded) {
		t.Fatalf("slow exporter: %v, want a *SupersededError", slowErr)
	}
	if se.Current.Cursor != 20 || se.Attempted.Cursor != 10 ||
		!strings.Contains(slowErr.Error(), "cursor 20") || !strings.Contains(slowErr.Error(), "cursor 10") {
		t.Fatalf("slow exporter's error does not name both cursors: %v", slowErr)
	}
	p, err := fast.Latest(ctx, "orders")
	if err != nil || p.Cursor != 20 || p.Exporter != "fast" || p.Object != fastPtr.Object {
		t.Fatalf("pointer %+v, %v", p, err)
	}
	if got := objects(t, fast); !slices.Equal(got, []string{fastPtr.Object}) {
		t.Fatalf("the bucket holds %v: the slow exporter's payload was left", got)
	}
}

// Many exporters publish at once: whatever the interleaving, every pointer
// revision is ahead of the one before, the pointer ends at the highest
// cursor, and the losers removed their payloads.
func TestRacingExporters(t *testing.T) {
	url := server(t)
	const n = 6
	cursors := []uint64{15, 40, 5, 30, 25, 10}
	stores := make([]*Store, n)
	for i := range stores {
		stores[i], _ = node(t, url, "snaps", Options{Exporter: fmt.Sprint("node-", i)})
	}
	ctx := ctxT(t)
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			write := export(cursors[i], 20, 200, uint64(i), nil)
			_, errs[i] = stores[i].Publish(ctx, "orders", func(w io.Writer) (artifact.Manifest, error) {
				<-start
				return write(w)
			})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, ErrSuperseded) {
			t.Fatalf("exporter %d: %v", i, err)
		}
		if cursors[i] == 40 && err != nil {
			t.Fatalf("the highest exporter was refused: %v", err)
		}
	}
	superseded := 0
	for _, err := range errs {
		if err != nil {
			superseded++
		}
	}
	revs := history(t, stores[0], "orders")
	t.Logf("%d pointer revisions, %d exporters superseded", len(revs), superseded)
	named := map[string]bool{}
	for i, p := range revs {
		named[p.Object] = true
		if i > 0 && p.Cursor <= revs[i-1].Cursor {
			t.Fatalf("pointer revision %d went from cursor %d to %d", i, revs[i-1].Cursor, p.Cursor)
		}
		if i > 0 && p.Previous != revs[i-1].Object {
			t.Fatalf("pointer revision %d names previous %s, the revision before named %s", i, p.Previous, revs[i-1].Object)
		}
	}
	if last := revs[len(revs)-1]; last.Cursor != 40 {
		t.Fatalf("the pointer ends at cursor %d, want 40", last.Cursor)
	}
	for _, o := range objects(t, stores[0]) {
		if !named[o] {
			t.Errorf("%s was never named by the pointer and is still there", o)
		}
	}
}

// A crash between the upload and the pointer leaves the previous artifact
// readable; the orphan is pruned once older than the grace, not before.
func TestCrashBetweenUploadAndPublish(t *testing.T) {
	const grace = 2 * time.Second
	s, _ := node(t, server(t), "snaps", Options{PublishWindow: time.Second})
	ctx := ctxT(t)
	var written []byte
	prev, err := s.Publish(ctx, "orders", export(10, 20, 500, 1, &written))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.stage(ctx, "orders", export(20, 20, 500, 2, nil))
	if err != nil {
		t.Fatal(err)
	}
	st.close() // the exporter dies here
	orphan := st.next.Object

	got, p := readAll(t, s, "orders")
	if p.Object != prev.Object || !bytes.Equal(got, written) {
		t.Fatalf("after the crash the pointer names %s (cursor %d), want the previous %s", p.Object, p.Cursor, prev.Object)
	}
	if removed, err := s.Prune(ctx, "orders", grace); err != nil || len(removed) > 0 {
		t.Fatalf("Prune within the grace removed %v, %v", removed, err)
	}
	if got := objects(t, s); !slices.Contains(got, orphan) {
		t.Fatalf("the orphan %s went before its grace: %v", orphan, got)
	}
	time.Sleep(grace + 500*time.Millisecond)
	removed, err := s.Prune(ctx, "orders", grace)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{orphan}) {
		t.Fatalf("Prune after the grace removed %v, want the orphan %s", removed, orphan)
	}
	if got := objects(t, s); !slices.Equal(got, []string{prev.Object}) {
		t.Fatalf("the bucket holds %v", got)
	}
	if got, _ := readAll(t, s, "orders"); !bytes.Equal(got, written) {
		t.Fatal("the previous artifact changed")
	}
}

// Prune never removes the pointer's payload, however old; the previous one
// stays for the grace after the move; other objects are not its business.
func TestPruneKeepsThePointed(t *testing.T) {
	const grace = time.Second
	s, _ := node(t, server(t), "snaps", Options{PublishWindow: time.Second})
	ctx := ctxT(t)
	if _, err := s.Prune(ctx, "orders", grace/2); err == nil {
		t.Fatal("Prune took a grace shorter than the publish window")
	}
	if removed, err := s.Prune(ctx, "orders", grace); err != nil || removed != nil {
		t.Fatalf("Prune of an empty series: %v, %v", removed, err)
	}
	foreign := []string{"orders/notes.txt", "orders.eu/" + strings.Repeat("a", digestLen) + objectSuffix}
	for _, o := range foreign {
		if _, err := s.obs.PutString(ctx, o, "x"); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.Publish(ctx, "orders", export(10, 5, 10, 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + 500*time.Millisecond)
	if removed, err := s.Prune(ctx, "orders", grace); err != nil || len(removed) > 0 {
		t.Fatalf("Prune removed %v (%v); the pointer names %s", removed, err, a.Object)
	}
	b, err := s.Publish(ctx, "orders", export(11, 5, 10, 2, nil))
	if err != nil {
		t.Fatal(err)
	}
	if b.Previous != a.Object {
		t.Fatalf("previous %q, want %s", b.Previous, a.Object)
	}
	// a is older than the grace, but the pointer left it just now.
	if removed, err := s.Prune(ctx, "orders", grace); err != nil || len(removed) > 0 {
		t.Fatalf("Prune right after the move removed %v (%v)", removed, err)
	}
	time.Sleep(grace + 500*time.Millisecond)
	removed, err := s.Prune(ctx, "orders", grace)
	if err != nil || !slices.Equal(removed, []string{a.Object}) {
		t.Fatalf("Prune after the grace removed %v (%v), want %s", removed, err, a.Object)
	}
	want := append([]string{b.Object}, foreign...)
	slices.Sort(want)
	if got := objects(t, s); !slices.Equal(got, want) {
		t.Fatalf("the bucket holds %v, want %v", got, want)
	}
	readAll(t, s, "orders")
}

// Open reads the pointer again when its payload was pruned under it, and
// gives up with ErrPayloadMissing when it stays missing.
func TestOpenPayloadVanishes(t *testing.T) {
	s, _ := node(t, server(t), "snaps", Options{OpenRetries: 2})
	ctx := ctxT(t)
	a, err := s.Publish(ctx, "orders", export(10, 5, 10, 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	var b Pointer
	calls := 0
	s.beforeGet = func(p Pointer) {
		calls++
		if calls > 1 {
			return
		}
		// Between the reader's pointer read and its Get, the pointer
		// moves on and a pruner removes what it named.
		if b, err = s.Publish(ctx, "orders", export(11, 5, 10, 2, nil)); err != nil {
			t.Error(err)
		}
		if err := s.obs.Delete(ctx, p.Object); err != nil {
			t.Error(err)
		}
	}
	rc, p, err := s.Open(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if p.Object != b.Object || p.Object == a.Object || calls != 2 {
		t.Fatalf("Open returned %s after %d reads, want %s after 2", p.Object, calls, b.Object)
	}

	s.beforeGet = nil
	if err := s.obs.Delete(ctx, b.Object); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(ctx, "orders"); !errors.Is(err, ErrPayloadMissing) || !strings.Contains(err.Error(), "after 3 reads") {
		t.Fatalf("Open of a missing payload: %v, want ErrPayloadMissing after 3 reads", err)
	}
}

// Publish refuses an artifact that does not check out or does not match
// what write reports, and leaves nothing behind.
func TestPublishRefusesBadArtifacts(t *testing.T) {
	tmp := t.TempDir()
	s, _ := node(t, server(t), "snaps", Options{TempDir: tmp})
	ctx := ctxT(t)
	good := export(10, 5, 10, 1, nil)
	for name, write := range map[string]func(io.Writer) (artifact.Manifest, error){
		"write fails": func(w io.Writer) (artifact.Manifest, error) {
			good(w)
			return artifact.Manifest{}, errors.New("disk on fire")
		},
		"wrong manifest": func(w io.Writer) (artifact.Manifest, error) {
			m, err := good(w)
			m.Cursor++
			return m, err
		},
		"truncated": func(w io.Writer) (artifact.Manifest, error) {
			var buf bytes.Buffer
			m, err := good(&buf)
			w.Write(buf.Bytes()[:buf.Len()-1])
			return m, err
		},
	} {
		if p, err := s.Publish(ctx, "orders", write); err == nil {
			t.Errorf("%s: published %+v", name, p)
		}
		emptyDir(t, tmp)
	}
	if got := objects(t, s); got != nil {
		t.Fatalf("the bucket holds %v", got)
	}
	if _, err := s.Latest(ctx, "orders"); !errors.Is(err, ErrNoArtifact) {
		t.Fatalf("Latest: %v, want ErrNoArtifact", err)
	}
	if _, err := s.Publish(ctx, "a/b", good); err == nil {
		t.Fatal("published to a series named a/b")
	}
}

// An upload older than the publish window is not named, and is removed.
func TestPublishWindowExceeded(t *testing.T) {
	s, _ := node(t, server(t), "snaps", Options{PublishWindow: time.Nanosecond})
	_, err := s.Publish(ctxT(t), "orders", export(10, 5, 10, 1, nil))
	if !errors.Is(err, ErrPublishWindow) {
		t.Fatalf("Publish: %v, want ErrPublishWindow", err)
	}
	if got := objects(t, s); got != nil {
		t.Fatalf("the bucket holds %v", got)
	}
}

// An artifact of another stream is refused by the series.
func TestPublishForeignStream(t *testing.T) {
	s, _ := node(t, server(t), "snaps", Options{})
	ctx := ctxT(t)
	if _, err := s.Publish(ctx, "orders", export(10, 5, 10, 1, nil)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Publish(ctx, "orders", func(w io.Writer) (artifact.Manifest, error) {
		aw, err := artifact.NewWriter(w, artifact.Manifest{Bucket: "orders", Stream: "KV_mirror", StreamCreated: testStreamCreated, Cursor: 99})
		if err != nil {
			return artifact.Manifest{}, err
		}
		return aw.Close()
	})
	if !errors.Is(err, ErrForeign) {
		t.Fatalf("Publish of another stream: %v, want ErrForeign", err)
	}
	if got := objects(t, s); len(got) != 1 {
		t.Fatalf("the bucket holds %v", got)
	}
}

// Nodes racing to create the buckets all end bound to them; a lease bucket
// without message TTLs is refused.
func TestNewRace(t *testing.T) {
	url := server(t)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	stores := make([]*Store, 5)
	errs := make([]error, len(stores))
	for i := range stores {
		_, js := testenv.JetStream(t, url)
		wg.Go(func() { stores[i], errs[i] = New(ctx, js, "snaps", Options{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	p, err := stores[0].Publish(ctx, "orders", export(10, 5, 10, 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		if got, err := s.Latest(ctx, "orders"); err != nil || got.Object != p.Object {
			t.Fatalf("Latest = %+v, %v", got, err)
		}
	}

	_, js := node(t, url, "other", Options{LeaseBucket: "plain"})
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "plain2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, js, "other", Options{LeaseBucket: "plain2"}); err == nil || !strings.Contains(err.Error(), "TTL") {
		t.Fatalf("New with a lease bucket without TTLs: %v", err)
	}
	if _, err := New(ctx, js, "bad.bucket", Options{}); err == nil {
		t.Fatal("New took a bucket name with a dot")
	}
}

// TestBindCreatesNothing: a reader binding where nothing was exported gets
// ErrNoArtifact and leaves no bucket behind; once an exporter has created
// the buckets, Bind reads what it published.
func TestBindCreatesNothing(t *testing.T) {
	url := server(t)
	ctx := ctxT(t)
	_, js := testenv.JetStream(t, url)
	_, err := Bind(ctx, js, "snaps", Options{})
	if !errors.Is(err, ErrNoArtifact) {
		t.Fatalf("Bind on an empty account: %v, want ErrNoArtifact", err)
	}
	names := js.StreamNames(ctx)
	for n := range names.Name() {
		t.Errorf("Bind created stream %s", n)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	exporter, _ := node(t, url, "snaps", Options{})
	if _, err := exporter.Publish(ctx, "orders", export(7, 3, 10, 1, nil)); err != nil {
		t.Fatal(err)
	}
	reader, err := Bind(ctx, js, "snaps", Options{})
	if err != nil {
		t.Fatal(err)
	}
	rc, p, err := reader.Open(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if p.Cursor != 7 || p.Records != 3 {
		t.Fatalf("pointer %+v, want cursor 7 and 3 records", p)
	}
}
