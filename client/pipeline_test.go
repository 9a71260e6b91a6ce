package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/client"
)

// TestPipelinedGets: many goroutines Get keys through one Client, whose
// plain Gets share its pipelined connections; every answer is the value
// of the key asked (no answer goes to another request), keys that need
// escaping included, and the service's fast server answered them (its
// counter says so). An absent key and an unknown fold keep their errors
// on that path, and a cancelled or expired context ends a Get.
func TestPipelinedGets(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	const n = 200
	keys := make([]string, n)
	var last uint64
	for i := range n {
		keys[i] = fmt.Sprintf("p.%03d", i)
		switch i % 4 {
		case 1:
			keys[i] += "/a/./b//c" // a valid KV key: it must reach the server escaped
		case 2:
			keys[i] += "/x/"
		}
		last = e.put(keys[i], []byte("value of "+keys[i]))
	}
	c := e.client()
	if _, _, err := c.Get(ctx, "f", keys[0], client.MinCursor(last, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	before := fastReads(t, e.api)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				k := keys[(g*131+i*7)%n]
				got, at, err := c.Get(ctx, "f", k)
				if err == nil && (got.Key != k || string(got.Value) != "value of "+k || at.Cursor < last) {
					err = fmt.Errorf("Get %s = %q (key %s) at %v", k, got.Value, got.Key, at)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := fastReads(t, e.api) - before; got < 16*500 {
		t.Errorf("the fast server answered %d of the %d Gets", got, 16*500)
	}

	if _, at, err := c.Get(ctx, "f", "p.absent"); !errors.Is(err, client.ErrNotFound) || at.Cursor < last {
		t.Errorf("Get of an absent key: %v at %v, want ErrNotFound with the position", err, at)
	}
	if _, _, err := c.Get(ctx, "nofold", "p.000"); !errors.Is(err, client.ErrNoFold) || !strings.Contains(err.Error(), `no fold named "nofold"`) {
		t.Errorf("Get of an unknown fold: %v, want ErrNoFold with the server's message", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Get(cancelled, "f", "p.000"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v", err)
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, _, err := c.Get(expired, "f", "p.000"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get with an expired deadline: %v", err)
	}
	if got, _, err := c.Get(context.Background(), "f", keys[1]); err != nil || string(got.Value) != "value of "+keys[1] {
		t.Errorf("Get without a deadline: %q, %v", got.Value, err)
	}
}

// fastReads is the service's count of the key reads its fast server
// answered.
func fastReads(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, "slipstream_http_fast_reads_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(f)
		}
	}
	t.Fatal("no slipstream_http_fast_reads_total in /metrics")
	return 0
}
