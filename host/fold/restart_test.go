package fold_test

import (
	"context"
	"fmt"
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
