package service_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/service"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// tokenTOML is a service whose API listens on a free loopback port over
// TLS and asks for the token in api.token.
const tokenTOML = `
data_dir = "data"
plugin_dir = "PLUGIN_DIR"
[nats]
url = "NATS_URL"
[http]
listen = "127.0.0.1:0"
token_file = "api.token"
tls_cert = "cert.pem"
tls_key = "key.pem"
[[fold]]
name = "f"
bucket = "cfg"
store = "sqlite"
`

// TestAPITokenOverTLS runs a service with token_file and TLS and reads a key
// of its fold: without the token the answer is 401, with it the value, over
// HTTPS only; /livez answers without the token.
func TestAPITokenOverTLS(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	if _, err := kv.Put(context.Background(), "route.a", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pool := testenv.SelfSigned(t, dir)
	const token = "tok-7Hq2_service.test"
	if err := os.WriteFile(filepath.Join(dir, "api.token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, dir, srv.ClientURL(), tokenTOML)
	r.waitReady(1)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	// A connection's first plain key read is the fast server's; a request
	// of another kind hands the connection to net/http. Every check below
	// runs on a connection of each.
	for _, fresh := range []bool{true, false} {
		if fresh {
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
		} else {
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxConnsPerHost: 1}
		}
		checkToken(t, client, r.svc.HTTPAddr(), token)
	}
	if n := fastReadsOver(t, client, r.svc.HTTPAddr(), token); n < 1 {
		t.Errorf("the fast server answered %d key reads with the token, want some", n)
	}
}

// checkToken is TestAPITokenOverTLS's reads through client.
func checkToken(t *testing.T, client *http.Client, addr, token string) {
	t.Helper()
	get := func(scheme, path, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, scheme+"://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("https", "/v1/folds/f/keys/route.a", ""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d %s, want 401", code, body)
	}
	if code, body := get("https", "/v1/folds/f/keys/route.a", "Bearer "+token+"-not"); code != http.StatusUnauthorized || strings.Contains(body, token) {
		t.Errorf("with a wrong token: %d %s, want 401 without the token", code, body)
	}
	if code, body := get("https", "/v1/folds/f/keys/route.a", "Bearer "+token); code != http.StatusOK || body != "v1" {
		t.Errorf("with the token: %d %q, want 200 v1", code, body)
	}
	if code, body := get("https", "/readyz", ""); code != http.StatusUnauthorized {
		t.Errorf("readyz without the token: %d %s, want 401", code, body)
	}
	if code, body := get("https", "/livez", ""); code != http.StatusOK {
		t.Errorf("livez without the token: %d %s, want 200", code, body)
	}
	// The TLS listener answers a plain HTTP request with an error, never
	// with the API.
	if code, body := get("http", "/v1/folds/f/keys/route.a", "Bearer "+token); code == http.StatusOK {
		t.Errorf("plain HTTP to the TLS API: %d %q", code, body)
	}
	// A client that does not trust the certificate gets no answer at all.
	if _, err := http.Get("https://" + addr + "/livez"); err == nil {
		t.Error("a client without the certificate's CA connected")
	}
}

// fastReadsOver is the service's count of the fast server's key reads,
// read through client with the token.
func fastReadsOver(t *testing.T, client *http.Client, addr, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Counter(t, testenv.Metrics(t, resp), "slipstream_http_fast_reads_total")
}

// TestAPIBadKeyPair: a tls_key that does not match tls_cert fails the
// start, naming the keys, before NATS is dialled.
func TestAPIBadKeyPair(t *testing.T) {
	dir := t.TempDir()
	testenv.SelfSigned(t, dir)
	certPEM, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.SelfSigned(t, dir) // a second key pair: cert.pem no longer matches key.pem
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	doc := strings.NewReplacer("NATS_URL", "nats://127.0.0.1:1", "PLUGIN_DIR", dir, `token_file = "api.token"`, "").Replace(tokenTOML)
	path := filepath.Join(dir, "slipstream.toml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.Start(context.Background(), cfg, slog.New(slog.DiscardHandler), service.Options{})
	if err == nil {
		_ = svc.Run(canceled())
		t.Fatal("Start succeeded with a key that does not match the certificate")
	}
	if !strings.Contains(err.Error(), "http api: tls_cert and tls_key:") {
		t.Errorf("Start error = %v", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
