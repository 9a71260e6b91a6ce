package service_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// TestBootstrapFromPeerWithToken: a node bootstraps from a peer whose API
// asks for a bearer token, sending the token of its own [http] table (the
// fleet's); the peer's artifact holds what the stream no longer does.
func TestBootstrapFromPeerWithToken(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := map[string]string{}
	var last uint64
	for i := range 20 {
		k := fmt.Sprintf("k.%02d", i)
		rev, err := kv.Put(ctx, k, []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		want[k], last = "v", rev
	}
	token := filepath.Join(t.TempDir(), "api.token")
	if err := os.WriteFile(token, []byte("s3cret-fleet-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Both nodes' APIs ask for the token.
	withToken := func(extra string) string {
		cfg := strings.Replace(foldTOML, `listen = "off"`, fmt.Sprintf("listen = \"127.0.0.1:0\"\ntoken_file = %q", token), 1)
		if cfg == foldTOML {
			t.Fatal("setup: foldTOML has no http listen line")
		}
		return cfg + extra
	}
	peer := start(t, t.TempDir(), srv.ClientURL(), withToken(""))
	peer.waitReady(last)

	stream, err := js.Stream(ctx, "KV_cfg")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(last+1)); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s/v1/folds/f/artifact", peer.svc.HTTPAddr())
	node := start(t, t.TempDir(), srv.ClientURL(), withToken(fmt.Sprintf("bootstrap_from = %q\n", url)))
	node.waitReady(last)
	equal(t, node.contents(), want)
}
