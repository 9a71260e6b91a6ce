package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// apiTOML is foldTOML with the HTTP API on a free loopback port.
var apiTOML = strings.Replace(foldTOML, `listen = "off"`, `listen = "127.0.0.1:0"`, 1)

// scrape reads the service's /metrics (testenv.Scrape).
func scrape(t *testing.T, addr string) map[string]float64 { return testenv.Scrape(t, addr) }

// status reads GET /v1/folds/f and /readyz.
func status(t *testing.T, addr string) (fold.Status, int) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/folds/f")
	if err != nil {
		t.Fatal(err)
	}
	var st fold.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	ready, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, ready.Body)
	ready.Body.Close()
	return st, ready.StatusCode
}

// metricsMatch reports the documented fold metrics that disagree with the
// fold's status.
func metricsMatch(st fold.Status, m map[string]float64, connected bool) []string {
	var bad []string
	want := map[string]float64{
		`slipstream_fold_cursor{fold="f"}`:          float64(st.Cursor),
		`slipstream_fold_stream_last_seq{fold="f"}`: float64(st.StreamLast),
		`slipstream_fold_pending{fold="f"}`:         float64(st.Pending),
		`slipstream_nats_connected`:                 map[bool]float64{true: 1, false: 0}[connected],
	}
	for _, s := range []fold.State{fold.StateStarting, fold.StateBootstrapping, fold.StateSynced, fold.StateRebuilding,
		fold.StateReconciling, fold.StateStalled, fold.StateStopped} {
		v := 0.0
		if s == st.State {
			v = 1
		}
		want[fmt.Sprintf(`slipstream_fold_state{fold="f",state=%q}`, s)] = v
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			bad = append(bad, fmt.Sprintf("%s = %v (present %v), status says %v", k, got, ok, v))
		}
	}
	return bad
}

// TestMetricsAndHealthTellTheTruth: the documented metrics equal the fold's
// status after a bootstrap, during live updates and through a NATS outage;
// the outage stalls the fold visibly within seconds (not ready, the reason
// says so, the connection metric drops) while reads go on; and a deleted
// bucket is reported too.
func TestMetricsAndHealthTellTheTruth(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	natsDir := t.TempDir()
	srv := testenv.NATSAt(t, natsDir, port)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var last uint64
	put := func(n int) {
		for i := range n {
			rev, err := kv.Put(ctx, fmt.Sprintf("k.%03d", i), []byte("v"))
			if err != nil {
				t.Fatal(err)
			}
			last = rev
		}
	}
	put(100)
	r := start(t, t.TempDir(), srv.ClientURL(), apiTOML)
	addr := r.svc.HTTPAddr()
	agree := func(phase string, connected bool) fold.Status {
		t.Helper()
		var st fold.Status
		var bad []string
		testenv.Eventually(t, 10*time.Second, phase+": metrics equal to the status", func() bool {
			st, _ = status(t, addr)
			bad = metricsMatch(st, scrape(t, addr), connected)
			return len(bad) == 0
		})
		return st
	}

	r.waitReady(last)
	if st := agree("after the bootstrap", true); st.Pending != 0 || st.StreamLast != last || st.NATS != "connected" {
		t.Fatalf("after the bootstrap: %+v", st)
	}
	put(50)
	r.waitReady(last)
	agree("after live updates", true)

	srv.Shutdown()
	srv.WaitForShutdown()
	down := time.Now()
	var st fold.Status
	var code int
	testenv.Eventually(t, 10*time.Second, "the fold stalled on the outage", func() bool {
		st, code = status(t, addr)
		return st.State == fold.StateStalled && code == http.StatusServiceUnavailable && !st.Ready
	})
	t.Logf("stalled %v after the server stopped: %s", time.Since(down).Round(time.Millisecond), st.Reason)
	if !strings.Contains(st.Reason, "nats") || st.NATS == "connected" {
		t.Errorf("the outage's status: reason %q, nats %q", st.Reason, st.NATS)
	}
	agree("during the outage", false)
	if resp, err := http.Get("http://" + addr + "/v1/folds/f/keys/k.001"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a read during the outage: %v %v", resp, err)
	}

	srv = testenv.NATSAt(t, natsDir, port)
	r.waitReady(last)
	agree("after the outage", true)

	_, js = testenv.JetStream(t, srv.ClientURL())
	if err := js.DeleteKeyValue(ctx, "cfg"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for st, code = status(t, addr); st.State != fold.StateStalled || code != http.StatusServiceUnavailable || !strings.Contains(st.Reason, "not found"); st, code = status(t, addr) {
		if time.Since(deleted) > 10*time.Second {
			t.Fatalf("10s after the bucket was deleted: %d %+v", code, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("after the bucket was deleted: %s", st.Reason)
}
