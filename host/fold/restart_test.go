package fold_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// consumers counts the consumers on a bucket's stream.
func consumers(t *testing.T, js jetstream.JetStream, bucket string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	l := s.ConsumerNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestServerRestartsDuringLiveWatch: the NATS server is restarted 20 times
// while the fold follows a bucket being written. The fold rides it out,
// ends equal to the bucket, and leaves exactly one consumer on the stream.
func TestServerRestartsDuringLiveWatch(t *testing.T) {
	dir := t.TempDir()
	srv := testenv.NATSAt(t, dir, -1)
	port := srv.Addr().(*net.TCPAddr).Port
	url := srv.ClientURL()
	reconnect := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}
	foldConn, err := nats.Connect(url, reconnect...)
	if err != nil {
		t.Fatal(err)
	}
	defer foldConn.Close()
	foldJS, _ := jetstream.New(foldConn)
	writer, err := nats.Connect(url, reconnect...)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	js, _ := jetstream.New(writer)
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "flaky"})
	ctx := context.Background()
	put := func(k, v string) {
		t.Helper()
		var err error
		for range 100 { // the server may be coming back up
			if _, err = kv.Put(ctx, k, []byte(v)); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("put %s: %v", k, err)
	}
	for i := range 50 {
		put(fmt.Sprintf("route.%02d", i), "0")
	}
	h := newHarness(t, foldJS, "flaky", nil, t.TempDir())
	h.start()
	h.waitSynced(50)
	for round := 1; round <= 20; round++ {
		srv.Shutdown()
		srv.WaitForShutdown()
		srv = testenv.NATSAt(t, dir, port)
		for i := range 5 {
			put(fmt.Sprintf("route.%02d", (round*5+i)%50), fmt.Sprint(round))
		}
		if round%5 == 0 {
			put(fmt.Sprintf("route.%02d", round), "x")
			if err := kv.Delete(ctx, fmt.Sprintf("route.%02d", round)); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := js.Stream(ctx, "KV_flaky")
	if err != nil {
		t.Fatal(err)
	}
	h.waitSynced(s.CachedInfo().State.LastSeq)
	diff(t, h.contents(), testenv.Contents(t, kv, ""))
	h.verified()
	testenv.Eventually(t, 10*time.Second, "a single consumer on the stream", func() bool {
		return len(consumers(t, js, "flaky")) == 1
	})
}

// TestConsumerDeletedDuringLiveWatch deletes the fold's consumer on the
// server, again and again, while the bucket is written. Each deletion
// resets the ordered consumer; the watch refuses the new consumer's
// messages (what the old one sent last may not have reached it), and the
// fold follows again from its committed cursor. It ends equal to the
// bucket, with one consumer left on the stream.
func TestConsumerDeletedDuringLiveWatch(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "reset"})
	ctx := context.Background()
	h := newHarness(t, js, "reset", nil, t.TempDir())
	log := &messages{}
	h.cfg.Logger = slog.New(log)
	h.cfg.RetryMin, h.cfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	putAll(t, js, "reset", 200, "k", "v")
	h.start()
	_, last := lastSeq(t, js, "reset")
	h.waitSynced(last)
	for round := range 6 {
		for _, name := range consumers(t, js, "reset") {
			if err := js.DeleteConsumer(ctx, "KV_reset", name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Fatal(err)
			}
		}
		for i := range 30 {
			if _, err := kv.Put(ctx, fmt.Sprintf("k%06d", (round*37+i)%200), []byte(fmt.Sprint(round))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, last = lastSeq(t, js, "reset")
	h.waitSynced(last)
	diff(t, h.contents(), testenv.Contents(t, kv, ""))
	if log.count("the consumer was reset; following again from the committed cursor") == 0 {
		t.Error("no session ended for a consumer reset: the deletions did not reach the path under test")
	}
	testenv.Eventually(t, 10*time.Second, "a single consumer on the stream", func() bool {
		return len(consumers(t, js, "reset")) == 1
	})
}
