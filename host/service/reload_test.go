package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// reloadTOML has folds keep, change and drop of one bucket; FOLDS is
// replaced by the test's [[fold]] tables.
const reloadTOML = `
data_dir = "data"
plugin_dir = "PLUGIN_DIR"
[log]
level = "LEVEL"
[nats]
url = "NATS_URL"
[http]
listen = "127.0.0.1:0"
FOLDS`

func foldTable(name, scope string) string {
	return fmt.Sprintf("[[fold]]\nname = %q\nbucket = \"cfg\"\nscope = [%q]\nstore = \"sqlite\"\n", name, scope)
}

// TestReload: a reload that adds, removes and changes folds starts, stops
// and rebuilds them while the unchanged fold goes on serving, untouched;
// a config that does not load is refused and changes nothing; settings a
// reload cannot apply are named.
func TestReload(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var last uint64
	for _, k := range []string{"keep.a", "change.a", "more.a", "drop.a", "add.a"} {
		rev, err := kv.Put(ctx, k, []byte("v-"+k))
		if err != nil {
			t.Fatal(err)
		}
		last = rev
	}
	dir := t.TempDir()
	cfgText := func(level string, folds ...string) string {
		return strings.NewReplacer("LEVEL", level, "FOLDS", strings.Join(folds, "")).Replace(reloadTOML)
	}
	r := start(t, dir, srv.ClientURL(), cfgText("info", foldTable("keep", "keep.>"), foldTable("change", "change.>"), foldTable("drop", "drop.>")))
	addr := r.svc.HTTPAddr()
	waitAll := func(names ...string) map[string]fold.Status {
		out := map[string]fold.Status{}
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("folds %v ready", names), func() bool {
			for _, f := range r.svc.Folds() {
				out[f.Name()] = f.Status(ctx)
			}
			for _, n := range names {
				if st, ok := out[n]; !ok || !st.Ready || st.Cursor < last {
					return false
				}
			}
			return len(out) == len(names)
		})
		return out
	}
	before := waitAll("keep", "change", "drop")
	keep := r.svc.Folds()[0]

	// Reads of the unchanged fold go on during the reloads, and never fail.
	var reads, failed atomic.Int64
	stopReading := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stopReading:
				return
			default:
			}
			resp, err := http.Get("http://" + addr + "/v1/folds/keep/keys/keep.a")
			if err != nil || resp.StatusCode != http.StatusOK {
				failed.Add(1)
			}
			if resp != nil {
				resp.Body.Close()
			}
			reads.Add(1)
		}
	})

	path := filepath.Join(dir, "slipstream.toml")
	write := func(text string) {
		text = strings.NewReplacer("NATS_URL", srv.ClientURL(), "PLUGIN_DIR", filepath.Dir(testenv.SQLitePlugin(t))).Replace(text)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reload := func() (int, map[string]any) {
		resp, err := http.Post("http://"+addr+"/v1/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}

	write(cfgText("info", foldTable("keep", "keep.>"), "[[fold]\nbroken"))
	if code, body := reload(); code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body["error"]), "slipstream.toml:") {
		t.Fatalf("reload of a broken config: %d %v", code, body)
	}
	if got := len(r.svc.Folds()); got != 3 {
		t.Fatalf("a refused reload left %d folds", got)
	}

	// A store_config the plugin refuses: the reload is refused whole.
	write(cfgText("info", foldTable("keep", "keep.>"), foldTable("change", "more.>")+"store_config = { nope = 1 }\n"))
	if code, body := reload(); code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body["error"]), "nope") {
		t.Fatalf("reload with a store_config the plugin refuses: %d %v", code, body)
	}
	if got := len(r.svc.Folds()); got != 3 || r.svc.Folds()[1].Status(ctx).Generation != before["change"].Generation {
		t.Fatalf("a refused reload changed the folds")
	}

	write(cfgText("debug", foldTable("keep", "keep.>"), foldTable("change", "more.>"), foldTable("add", "add.>")))
	code, body := reload()
	if code != http.StatusOK {
		t.Fatalf("reload: %d %v", code, body)
	}
	want := map[string]any{"added": []any{"add"}, "removed": []any{"drop"}, "restarted": []any{"change"},
		"unchanged": []any{"keep"}, "need_restart": []any{"log"}}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("reload answered %v, want %v", body, want)
	}
	after := waitAll("keep", "change", "add")
	close(stopReading)
	readers.Wait()
	if failed.Load() > 0 || reads.Load() == 0 {
		t.Errorf("%d of %d reads of the unchanged fold failed during the reloads", failed.Load(), reads.Load())
	}
	if r.svc.Folds()[0] != keep || after["keep"].Generation != before["keep"].Generation {
		t.Errorf("the unchanged fold was touched: generation %d, then %d", before["keep"].Generation, after["keep"].Generation)
	}
	if after["change"].Generation <= before["change"].Generation {
		t.Errorf("the fold with a new scope was not rebuilt: generation %d, then %d", before["change"].Generation, after["change"].Generation)
	}
	var names []string
	for _, f := range r.svc.Folds() {
		names = append(names, f.Name())
	}
	if !slices.Equal(names, []string{"keep", "change", "add"}) {
		t.Errorf("folds after the reload: %v", names)
	}
	for path, want := range map[string]string{"/v1/folds/change/keys/more.a": "v-more.a", "/v1/folds/add/keys/add.a": "v-add.a"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || b.String() != want {
			t.Errorf("GET %s: %d %q", path, resp.StatusCode, b.String())
		}
	}
	if resp, err := http.Get("http://" + addr + "/v1/folds/drop"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the removed fold is still served: %v %v", resp, err)
	}
	// The removed fold's directory is released: a Fold can open it.
	f := fold.New(fold.Config{Name: "drop", Dir: filepath.Join(dir, "data", "folds", "drop")}, nil)
	if err := f.Open(); err != nil {
		t.Errorf("the removed fold's directory is still held: %v", err)
	} else {
		f.Close()
	}
}
