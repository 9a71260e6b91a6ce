package main

import (
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// startProtected starts the quickstart with its API behind token_file and
// TLS, and waits until /readyz, asked over HTTPS with the token, is 200.
func (q *quickstart) startProtected(token string) (dir string) {
	q.t.Helper()
	dir = filepath.Dir(q.config)
	pool := testenv.SelfSigned(q.t, dir)
	if err := os.WriteFile(filepath.Join(dir, "api.token"), []byte(token+"\n"), 0o600); err != nil {
		q.t.Fatal(err)
	}
	raw, err := os.ReadFile(q.config)
	if err != nil {
		q.t.Fatal(err)
	}
	listen := `listen = "` + q.httpAddr + `"`
	cfg := strings.Replace(string(raw), listen, listen+"\ntoken_file = \"api.token\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"", 1)
	if cfg == string(raw) {
		q.t.Fatal("setup: no [http] listen line in the quickstart config")
	}
	if err := os.WriteFile(q.config, []byte(cfg), 0o644); err != nil {
		q.t.Fatal(err)
	}
	q.launch()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	testenv.Eventually(q.t, 60*time.Second, "readyz 200 over https with the token", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "https://"+q.httpAddr+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return dir
}

// TestCLIWithTokenAndTLS runs the service with its API behind a token and
// TLS and drives every verb that calls the API: each works with the token
// from --token-file or SLIPSTREAM_TOKEN_FILE and the CA from --ca-file or
// SLIPSTREAM_CA_FILE, and fails without them, never printing a token.
func TestCLIWithTokenAndTLS(t *testing.T) {
	const token = "cli-T0ken.9x_right"
	q := newQuickstart(t)
	dir := q.startProtected(token)
	wrong := filepath.Join(dir, "wrong.token")
	if err := os.WriteFile(wrong, []byte("cli-wrong-guess\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile, caFile := filepath.Join(dir, "api.token"), filepath.Join(dir, "cert.pem")
	api := "https://" + q.httpAddr

	// run runs the CLI with only env set of the SLIPSTREAM_ variables.
	run := func(env []string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(q.bin, args...)
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "SLIPSTREAM_") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		if strings.Contains(string(out), token) || strings.Contains(string(out), "cli-wrong-guess") {
			t.Errorf("slipstream %s printed a token:\n%s", strings.Join(args, " "), out)
		}
		return string(out), exitCode(err)
	}
	withEnv := []string{"SLIPSTREAM_TOKEN_FILE=" + tokenFile, "SLIPSTREAM_CA_FILE=" + caFile}

	q.cli("kv", "--server", q.natsURL, "put", "config", "route.a", "hello")
	testenv.Eventually(t, 10*time.Second, "get route.a through the CLI with the env", func() bool {
		out, code := run(withEnv, "get", "--api", api, "routes", "route.a")
		return code == 0 && out == "hello"
	})

	// Every verb that calls the API, with the flags and with the env.
	export := filepath.Join(dir, "routes.slipsnap")
	for _, args := range [][]string{
		{"status"},
		{"get", "routes", "route.a"},
		{"scan", "routes"},
		{"verify", "routes"},
		{"reconcile", "routes"},
		{"export", "--to", export, "routes"},
	} {
		flagged := append([]string{args[0], "--api", api, "--token-file", tokenFile, "--ca-file", caFile}, args[1:]...)
		if out, code := run(nil, flagged...); code != 0 {
			t.Errorf("slipstream %s: exit %d\n%s", strings.Join(flagged, " "), code, out)
		}
		envd := append([]string{args[0], "--api", api}, args[1:]...)
		if out, code := run(withEnv, envd...); code != 0 {
			t.Errorf("slipstream %s with the env: exit %d\n%s", strings.Join(envd, " "), code, out)
		}
		// Without a token, the 401 and how to pass one.
		bare := append([]string{args[0], "--api", api, "--ca-file", caFile}, args[1:]...)
		out, code := run(nil, bare...)
		if code != 1 || !strings.Contains(out, "401 Unauthorized") || !strings.Contains(out, "SLIPSTREAM_TOKEN_FILE") {
			t.Errorf("slipstream %s without a token: exit %d, want 1 with a 401 and a hint\n%s", strings.Join(bare, " "), code, out)
		}
	}
	if fi, err := os.Stat(export); err != nil || fi.Size() == 0 {
		t.Errorf("export wrote no artifact: %v", err)
	}

	// The flag wins over the env, so a wrong token file is refused.
	out, code := run(withEnv, "get", "--api", api, "--token-file", wrong, "routes", "route.a")
	if code != 1 || !strings.Contains(out, "401 Unauthorized: invalid bearer token") {
		t.Errorf("wrong token: exit %d\n%s", code, out)
	}
	// Without the CA the certificate is not trusted; plain HTTP gets no API.
	out, code = run([]string{"SLIPSTREAM_TOKEN_FILE=" + tokenFile}, "status", "--api", api)
	if code != 1 || !strings.Contains(out, "certificate") {
		t.Errorf("https without the CA: exit %d\n%s", code, out)
	}
	out, code = run(withEnv, "status", "--api", q.httpAddr)
	if code != 1 {
		t.Errorf("http to the TLS API: exit %d\n%s", code, out)
	}
	// Unreadable token or CA files are usage errors.
	out, code = run(nil, "status", "--api", api, "--token-file", filepath.Join(dir, "nope"))
	if code != 2 || !strings.Contains(out, "--token-file") {
		t.Errorf("missing token file: exit %d\n%s", code, out)
	}
	out, code = run(nil, "status", "--api", api, "--token-file", tokenFile, "--ca-file", wrong)
	if code != 2 || !strings.Contains(out, "--ca-file") {
		t.Errorf("CA file without a certificate: exit %d\n%s", code, out)
	}
	q.terminate()
}
