package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/api"
)

// TestRequireToken serves the real API (without folds) behind the token
// over HTTP and checks who gets through: only /livez is open, a missing or
// wrong token is 401 with a Bearer challenge and a JSON error that repeats
// nothing of what was sent, and the right token reaches the API.
func TestRequireToken(t *testing.T) {
	const token = "Zq8-right.token_42"
	srv := httptest.NewServer(api.RequireToken(api.Handler(nil, prometheus.NewRegistry(), api.Options{}), token))
	defer srv.Close()

	tests := []struct {
		name   string
		method string
		path   string
		auth   string // the Authorization header; empty: none
		want   int
	}{
		{"no header", "GET", "/v1/folds", "", 401},
		{"wrong token", "GET", "/v1/folds", "Bearer wrong-guess-9f", 401},
		{"right token with a suffix", "GET", "/v1/folds", "Bearer " + token + "x", 401},
		{"a prefix of the right token", "GET", "/v1/folds", "Bearer " + token[:len(token)-1], 401},
		{"right token, other scheme", "GET", "/v1/folds", "Basic " + token, 401},
		{"token without a scheme", "GET", "/v1/folds", token, 401},
		{"scheme without a token", "GET", "/v1/folds", "Bearer ", 401},
		{"right token", "GET", "/v1/folds", "Bearer " + token, 200},
		{"right token, scheme in lower case", "GET", "/v1/folds", "bearer " + token, 200},
		{"right token reaches a 404", "GET", "/v1/folds/nope", "Bearer " + token, 404},
		{"post without a token", "POST", "/v1/folds/nope/reconcile", "", 401},
		{"post with the token", "POST", "/v1/folds/nope/reconcile", "Bearer " + token, 404},
		{"readyz is closed", "GET", "/readyz", "", 401},
		{"readyz with the token", "GET", "/readyz", "Bearer " + token, 200},
		{"metrics are closed", "GET", "/metrics", "Bearer nope", 401},
		{"metrics with the token", "GET", "/metrics", "Bearer " + token, 200},
		{"livez is open", "GET", "/livez", "", 200},
		{"livez is open with a query", "GET", "/livez?verbose=1", "", 200},
		{"livez is open to HEAD", "HEAD", "/livez", "", 200},
		{"livez with a wrong token is open too", "GET", "/livez", "Bearer wrong-guess-9f", 200},
		{"only GET livez is open", "POST", "/livez", "", 401},
		{"a path below livez is closed", "GET", "/livez/x", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: status %d, want %d: %s", tt.method, tt.path, resp.StatusCode, tt.want, body)
			}
			if tt.want != http.StatusUnauthorized {
				if c := resp.Header.Get("WWW-Authenticate"); c != "" {
					t.Errorf("WWW-Authenticate %q on a %d", c, resp.StatusCode)
				}
				return
			}
			if c := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", c)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var e api.Error
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Errorf("body %q is not an api.Error (%v)", body, err)
			}
			var all strings.Builder
			all.Write(body)
			for k, vs := range resp.Header {
				all.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
			}
			for _, secret := range []string{token, "wrong-guess-9f", token[:len(token)-1]} {
				if strings.Contains(all.String(), secret) {
					t.Errorf("the answer repeats %q:\n%s", secret, all.String())
				}
			}
		})
	}
}

func TestRequireTokenRefusesEmptyToken(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("RequireToken with an empty token did not panic")
		}
	}()
	api.RequireToken(http.NotFoundHandler(), "")
}
