package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slipstreamkv/slipstream/client"
	"github.com/slipstreamkv/slipstream/host/api"
)

// apiDefault is the default of --api.
const apiDefault = "127.0.0.1:7070"

// The environment variables that give --token-file and --ca-file their
// defaults, so that a shell can set them once for every verb.
const (
	envTokenFile = "SLIPSTREAM_TOKEN_FILE"
	envCAFile    = "SLIPSTREAM_CA_FILE"
)

// apiTimeout bounds the calls that answer at once (status, reads, verify,
// reconcile); an export streams for as long as the fold is large.
const apiTimeout = 30 * time.Second

// apiClient calls a running service's HTTP API for one verb, from the
// flags every such verb shares: --api, --token-file and --ca-file.
type apiClient struct {
	addr      *string
	tokenFile *string
	caFile    *string

	ready     bool
	token     string
	transport http.RoundTripper
}

// apiFlags defines --api, --token-file and --ca-file on fs.
func apiFlags(fs *flag.FlagSet) *apiClient {
	return &apiClient{
		addr: fs.String("api", apiDefault, "the service's HTTP API: host:port, or an http:// or https:// URL"),
		tokenFile: fs.String("token-file", os.Getenv(envTokenFile),
			"file holding the API's bearer token (default $"+envTokenFile+")"),
		caFile: fs.String("ca-file", os.Getenv(envCAFile),
			"PEM file of the CAs to trust for an https:// --api instead of the system's (default $"+envCAFile+")"),
	}
}

// apiURL joins the --api address (host:port or a URL) and a path.
func apiURL(base, path string) string {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return strings.TrimRight(base, "/") + path
}

// prepare reads the token and CA files once. Their problems are usage
// errors, like a bad flag; no message shows the token.
func (c *apiClient) prepare() error {
	if c.ready {
		return nil
	}
	var err error
	if c.token, err = readToken(*c.tokenFile); err != nil {
		return err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	if *c.caFile != "" {
		pem, err := os.ReadFile(*c.caFile)
		if err != nil {
			return usageErr("--ca-file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return usageErr("--ca-file: %s holds no PEM certificate", *c.caFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c.transport, c.ready = t, true
	return nil
}

// readToken reads the bearer token in the file at path ("" when path is
// empty). Its problems are usage errors; none shows the token.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", usageErr("--token-file: %v", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", usageErr("--token-file: %s holds no token", path)
	}
	return token, nil
}

// do sends a request without a body to path, with the token if there is
// one, giving up after timeout (0: never). A 401 is returned as an error,
// which says how to pass a token when none was sent; other answers are the
// caller's.
func (c *apiClient) do(method, path string, timeout time.Duration) (*http.Response, error) {
	if err := c.prepare(); err != nil {
		return nil, err
	}
	req, err := http.NewRequest(method, apiURL(*c.addr, path), nil)
	if err != nil {
		return nil, usageErr("--api: %v", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := (&http.Client{Transport: c.transport, Timeout: timeout}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("is slipstream running? %w", err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		defer resp.Body.Close()
		err := apiError(resp)
		if c.token == "" {
			err = fmt.Errorf("%w (the API asks for a bearer token: pass --token-file FILE or set %s)", err, envTokenFile)
		}
		return nil, err
	}
	return resp, nil
}

func (c *apiClient) get(path string) (*http.Response, error) {
	return c.do(http.MethodGet, path, apiTimeout)
}

// apiError turns a non-2xx response into an error with the server's message.
func apiError(resp *http.Response) error {
	var e api.Error
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
}

// readErr says what went wrong with a read made through the client: the
// API's answer as "STATUS: message", with how to pass a token for a 401
// when none was sent, or that the service did not answer.
func (c *apiClient) readErr(err error) error {
	var e *client.Error
	switch {
	case errors.As(err, &e):
		err = fmt.Errorf("%d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
		if e.StatusCode == http.StatusUnauthorized && c.token == "" {
			err = fmt.Errorf("%w (the API asks for a bearer token: pass --token-file FILE or set %s)", err, envTokenFile)
		}
		return err
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	default:
		return fmt.Errorf("is slipstream running? %w", err)
	}
}

func cmdGet(args []string, stdout, stderr io.Writer) error {
	fs := flags("get", stderr)
	api := apiFlags(fs)
	rev := fs.Bool("revision", false, "print the revision on stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErr("usage: slipstream get [--api ADDR] FOLD KEY")
	}
	c, err := newAPIClient(api)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	e, _, err := c.Get(ctx, fs.Arg(0), fs.Arg(1))
	if err != nil {
		return api.readErr(err)
	}
	if *rev {
		fmt.Fprintln(stderr, "revision", e.Revision)
	}
	_, err = stdout.Write(e.Value)
	return err
}

func cmdScan(args []string, stdout, stderr io.Writer) error {
	fs := flags("scan", stderr)
	api := apiFlags(fs)
	prefix := fs.String("prefix", "", "only keys starting with this")
	limit := fs.Int("limit", 0, "stop after this many keys (0: all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("usage: slipstream scan [--api ADDR] [--prefix P] [--limit N] FOLD")
	}
	c, err := newAPIClient(api)
	if err != nil {
		return err
	}
	// A scan takes as long as the fold is large; it gives up when no key
	// arrives for apiTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled := time.AfterFunc(apiTimeout, cancel)
	defer stalled.Stop()
	seen := 0
	for e, err := range c.Scan(ctx, fs.Arg(0), *prefix) {
		if err != nil {
			return api.readErr(err)
		}
		stalled.Reset(apiTimeout)
		v := "(binary " + strconv.Itoa(len(e.Value)) + " bytes)"
		if utf8.Valid(e.Value) {
			v = string(e.Value)
		}
		fmt.Fprintf(stdout, "%s\t%d\t%s\n", e.Key, e.Revision, v)
		if seen++; *limit > 0 && seen >= *limit {
			return nil
		}
	}
	return nil
}

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	fs := flags("status", stderr)
	api := apiFlags(fs)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := newAPIClient(api)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	var list []client.Status
	if fs.NArg() == 1 {
		st, err := c.Status(ctx, fs.Arg(0))
		if err != nil {
			return api.readErr(err)
		}
		list = []client.Status{st}
	} else if list, err = c.Folds(ctx); err != nil {
		return api.readErr(err)
	}
	if *asJSON {
		var out []byte
		if fs.NArg() == 1 {
			out = list[0].Raw
		} else {
			raws := make([]json.RawMessage, len(list))
			for i, st := range list {
				raws[i] = st.Raw
			}
			if out, err = json.MarshalIndent(map[string]any{"folds": raws}, "", "  "); err != nil {
				return err
			}
		}
		_, err = stdout.Write(append(out, '\n'))
		return err
	}
	fmt.Fprintf(stdout, "%-20s %-14s %-6s %-4s %12s %10s %10s %12s\n", "FOLD", "STATE", "READY", "GEN", "CURSOR", "LAG", "PENDING", "KEYS")
	for _, s := range list {
		fmt.Fprintf(stdout, "%-20s %-14s %-6t %-4d %12d %10d %10d %12d\n", s.Name, s.State, s.Ready, s.Generation, s.Cursor, s.Lag, s.Pending, s.Keys)
		if s.Reason != "" {
			fmt.Fprintf(stdout, "  reason: %s\n", s.Reason)
		}
	}
	return nil
}

func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fs := flags("verify", stderr)
	client := apiFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("usage: slipstream verify [--api ADDR] FOLD")
	}
	resp, err := client.get("/v1/folds/" + url.PathEscape(fs.Arg(0)) + "/verify")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	var v api.Verification
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return err
	}
	s := v.Summary
	fmt.Fprintf(stdout, "bucket keys %d, fold keys %d: %d stale, %d missing, %d changed\n",
		s.BucketKeys, s.FoldKeys, s.Stale, s.Missing, s.Changed)
	for _, d := range v.Differences {
		fmt.Fprintf(stdout, "%-8s %s (fold revision %d, bucket revision %d)\n", d.Kind, d.Key, d.FoldRev, d.BucketRev)
	}
	if v.Diverged {
		return fmt.Errorf("fold %s differs from its bucket", fs.Arg(0))
	}
	return nil
}

func cmdReconcile(args []string, stdout, stderr io.Writer) error {
	fs := flags("reconcile", stderr)
	client := apiFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("usage: slipstream reconcile [--api ADDR] FOLD")
	}
	resp, err := client.do(http.MethodPost, "/v1/folds/"+url.PathEscape(fs.Arg(0))+"/reconcile", apiTimeout)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return apiError(resp)
	}
	fmt.Fprintf(stdout, "reconcile of %s requested; watch 'slipstream status'\n", fs.Arg(0))
	return nil
}
