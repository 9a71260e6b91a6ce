package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
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
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// apiFlags defines --api, --token-file and --ca-file on fs. The files'
// defaults are the environment's SLIPSTREAM_TOKEN_FILE and
// SLIPSTREAM_CA_FILE; a flag wins over its variable.
func apiFlags(fs *pflag.FlagSet) *apiClient {
	return &apiClient{
		addr: fs.String("api", apiDefault, "the service's HTTP API, `ADDR`: host:port, or an http:// or https:// URL"),
		tokenFile: fs.String("token-file", os.Getenv(envTokenFile),
			"`FILE` holding the API's bearer token (default $"+envTokenFile+")"),
		caFile: fs.String("ca-file", os.Getenv(envCAFile),
			"PEM `FILE` of the CAs to trust for an https:// --api instead of the system's (default $"+envCAFile+")"),
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

// completeFolds completes a verb's FOLD argument with the names of the
// running service's folds, and with keys (withKey, for get) its KEY
// argument; a service that does not answer completes nothing.
func completeFolds(a *apiClient, withKey bool) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		const none = cobra.ShellCompDirectiveNoFileComp
		if len(args) > 1 || (len(args) == 1 && !withKey) {
			return nil, none
		}
		c, err := newAPIClient(a)
		if err != nil {
			return nil, none
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var out []cobra.Completion
		if len(args) == 1 {
			for e, err := range c.Scan(ctx, args[0], toComplete, client.PageSize(200)) {
				if err != nil || len(out) == 200 {
					break
				}
				out = append(out, e.Key)
			}
			return out, none
		}
		list, err := c.Folds(ctx)
		if err != nil {
			return nil, none
		}
		for _, s := range list {
			if strings.HasPrefix(s.Name, toComplete) {
				out = append(out, s.Name)
			}
		}
		return out, none
	}
}

func getCmd() *cobra.Command {
	var rev, asJSON bool
	c := &cobra.Command{
		Use:   "get FOLD KEY",
		Short: "Read one key of a fold from a running service",
		Long: `Print the value of KEY in FOLD as the running service holds it (after the
fold's transforms), byte for byte and without a newline added. A key the fold
does not hold exits 1 with 404.

--revision also prints the key's revision on stderr; --json prints one object
instead: {key, revision, value (or value_base64 when the value is not UTF-8),
position}, where position (GENERATION.CURSOR) is what the read is at least as
new as, to pass to 'slipstream watch --from'.`,
		Example: `  slipstream get routes route.a
  slipstream get routes route.a --revision
  slipstream get routes route.a --json --api https://node1.example.com:7070`,
		Args: exactArgs("FOLD", "KEY"),
	}
	api := apiFlags(c.Flags())
	c.Flags().BoolVar(&rev, "revision", false, "print the revision on stderr")
	jsonFlag(c, &asJSON, "print {key, revision, value or value_base64, position} as JSON")
	c.ValidArgsFunction = completeFolds(api, true)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		cl, err := newAPIClient(api)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		e, at, err := cl.Get(ctx, args[0], args[1])
		if err != nil {
			return api.readErr(err)
		}
		if asJSON {
			j := newEntryJSON(e.Key, e.Revision, e.Value)
			j.Position = at.String()
			return writeJSON(cmd.OutOrStdout(), j)
		}
		if rev {
			fmt.Fprintln(cmd.ErrOrStderr(), "revision", e.Revision)
		}
		_, err = cmd.OutOrStdout().Write(e.Value)
		return err
	}
	return c
}

func scanCmd() *cobra.Command {
	var (
		prefix string
		limit  int
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "scan FOLD",
		Short: "List the keys of a fold from a running service",
		Long: `List the keys of FOLD (those starting with --prefix) in key order, with their
revisions and values, as the running service holds them.

For people, a table: KEY, REVISION, VALUE. A value that holds a tab, a newline
or another control character, or that starts with a quote or a parenthesis, is
printed Go-quoted, and a value that is not UTF-8 as "(binary N bytes)", so a
row is never ambiguous. For scripts, --json prints JSON Lines: one object per
key, {key, revision, value (or value_base64), position}, where position is the
scan's (GENERATION.CURSOR), to pass to 'slipstream watch --from'.`,
		Example: `  slipstream scan routes
  slipstream scan routes --prefix route.n
  slipstream scan routes --prefix route. --limit 10 --json | jq -r .key`,
		Args: exactArgs("FOLD"),
	}
	api := apiFlags(c.Flags())
	c.Flags().StringVar(&prefix, "prefix", "", "only keys starting with `P`")
	c.Flags().IntVar(&limit, "limit", 0, "stop after `N` keys (0: all)")
	jsonFlag(c, &asJSON, "print JSON Lines: one {key, revision, value or value_base64, position} per key")
	c.ValidArgsFunction = completeFolds(api, false)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if limit < 0 {
			return argsErr("--limit: %d is negative", limit)
		}
		cl, err := newAPIClient(api)
		if err != nil {
			return err
		}
		// A scan takes as long as the fold is large; it gives up when no key
		// arrives for apiTimeout.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stalled := time.AfterFunc(apiTimeout, cancel)
		defer stalled.Stop()
		out := cmd.OutOrStdout()
		t := &table{w: out, right: []bool{false, true, false}}
		if !asJSON {
			t.add("KEY", "REVISION", "VALUE")
		}
		var at client.Position
		seen := 0
		for e, err := range cl.Scan(ctx, args[0], prefix, client.ScanPosition(&at)) {
			if err != nil {
				t.flush()
				return api.readErr(err)
			}
			stalled.Reset(apiTimeout)
			if asJSON {
				j := newEntryJSON(e.Key, e.Revision, e.Value)
				j.Position = at.String()
				if err := writeJSONLine(out, j); err != nil {
					return err
				}
			} else {
				t.add(showKey(e.Key), strconv.FormatUint(e.Revision, 10), showValue(e.Value))
			}
			if seen++; limit > 0 && seen >= limit {
				break
			}
		}
		return t.flush()
	}
	return c
}

// table prints aligned columns for people, a batch of rows at a time so
// that a long listing streams: a column's width is the widest cell so far.
// The last column is not padded.
type table struct {
	w      io.Writer
	right  []bool // right-align the column
	rows   [][]string
	widths []int
	err    error
}

const tableBatch = 1000

func (t *table) add(cells ...string) {
	t.rows = append(t.rows, cells)
	if len(t.rows) >= tableBatch {
		t.flush()
	}
}

func (t *table) flush() error {
	for _, r := range t.rows {
		for i, c := range r {
			if i == len(t.widths) {
				t.widths = append(t.widths, 0)
			}
			t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		b.Reset()
		for i, c := range r {
			pad := strings.Repeat(" ", t.widths[i]-utf8.RuneCountInString(c))
			switch {
			case i == len(r)-1 && !(i < len(t.right) && t.right[i]):
				b.WriteString(c)
			case i < len(t.right) && t.right[i]:
				b.WriteString(pad + c)
			default:
				b.WriteString(c + pad)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteByte('\n')
		if t.err == nil {
			_, t.err = io.WriteString(t.w, b.String())
		}
	}
	t.rows = t.rows[:0]
	return t.err
}

func statusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [FOLD]",
		Short: "Show the state of the folds of a running service",
		Long: `Show the state of every fold of a running service, or of FOLD: its state,
whether it has caught up, its generation, cursor, lag, pending updates and keys,
and the reason of a stalled fold.

--json prints the service's own JSON: the fold's object, or {"folds": [...]}.`,
		Example: `  slipstream status
  slipstream status routes --json
  SLIPSTREAM_TOKEN_FILE=/etc/slipstream/api.token slipstream status --api https://node1.example.com:7070`,
		Args: rangeArgs(0, "[FOLD]"),
	}
	api := apiFlags(c.Flags())
	jsonFlag(c, &asJSON, "print the service's JSON")
	c.ValidArgsFunction = completeFolds(api, false)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		cl, err := newAPIClient(api)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		var list []client.Status
		if len(args) == 1 {
			st, err := cl.Status(ctx, args[0])
			if err != nil {
				return api.readErr(err)
			}
			list = []client.Status{st}
		} else if list, err = cl.Folds(ctx); err != nil {
			return api.readErr(err)
		}
		stdout := cmd.OutOrStdout()
		if asJSON {
			var out []byte
			if len(args) == 1 {
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
		printStatus(stdout, list)
		return nil
	}
	return c
}

// printStatus prints list as status's table. A fold whose store did not
// report its keys shows "?" and why, not a 0 that reads as an empty fold.
func printStatus(w io.Writer, list []client.Status) {
	fmt.Fprintf(w, "%-20s %-14s %-6s %-4s %12s %10s %10s %12s\n", "FOLD", "STATE", "READY", "GEN", "CURSOR", "LAG", "PENDING", "KEYS")
	for _, s := range list {
		keys := strconv.FormatUint(s.Keys, 10)
		if s.StoreError != "" {
			keys = "?" // not counted: an empty fold would also show 0
		}
		fmt.Fprintf(w, "%-20s %-14s %-6t %-4d %12d %10d %10d %12s\n", s.Name, s.State, s.Ready, s.Generation, s.Cursor, s.Lag, s.Pending, keys)
		if s.Reason != "" {
			fmt.Fprintf(w, "  reason: %s\n", s.Reason)
		}
		if s.StoreError != "" {
			fmt.Fprintf(w, "  keys not counted: %s\n", s.StoreError)
		}
	}
}

func verifyCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify FOLD",
		Short: "Compare a fold with its bucket; exit 1 on any difference",
		Long: `Compare FOLD, read-only, with its bucket: the keys and revisions the bucket
holds against those the fold holds. Print the counts and every differing key
(stale: in the fold only; missing: in the bucket only; changed: another
revision), and exit 1 if there is any difference.

--json prints the service's answer: {diverged, summary, differences}.`,
		Example: `  slipstream verify routes
  slipstream verify routes --json || slipstream reconcile routes`,
		Args: exactArgs("FOLD"),
	}
	client := apiFlags(c.Flags())
	jsonFlag(c, &asJSON, "print {diverged, summary, differences} as JSON")
	c.ValidArgsFunction = completeFolds(client, false)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		resp, err := client.get("/v1/folds/" + url.PathEscape(args[0]) + "/verify")
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
		stdout := cmd.OutOrStdout()
		if asJSON {
			if err := writeJSON(stdout, v); err != nil {
				return err
			}
		} else {
			s := v.Summary
			fmt.Fprintf(stdout, "bucket keys %d, fold keys %d: %d stale, %d missing, %d changed\n",
				s.BucketKeys, s.FoldKeys, s.Stale, s.Missing, s.Changed)
			for _, d := range v.Differences {
				fmt.Fprintf(stdout, "%-8s %s (fold revision %d, bucket revision %d)\n", d.Kind, d.Key, d.FoldRev, d.BucketRev)
			}
		}
		if v.Diverged {
			return fmt.Errorf("fold %s differs from its bucket", args[0])
		}
		return nil
	}
	return c
}

func reconcileCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "reconcile FOLD",
		Short: "Ask a running fold to repair itself against its bucket",
		Long: `Ask the running service to reconcile FOLD: list the bucket's live keys and
revisions, delete what the bucket no longer has and fetch again what differs.
It runs in the service; follow it with 'slipstream status' (state reconciling)
and check it with 'slipstream verify'.`,
		Example: `  slipstream reconcile routes
  slipstream reconcile routes --json`,
		Args: exactArgs("FOLD"),
	}
	client := apiFlags(c.Flags())
	jsonFlag(c, &asJSON, `print {"fold", "requested"} as JSON`)
	c.ValidArgsFunction = completeFolds(client, false)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		resp, err := client.do(http.MethodPost, "/v1/folds/"+url.PathEscape(args[0])+"/reconcile", apiTimeout)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return apiError(resp)
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), map[string]any{"fold": args[0], "requested": true})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "reconcile of %s requested; watch 'slipstream status'\n", args[0])
		return nil
	}
	return c
}

func reloadCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "reload",
		Short: "Have a running service read its config file again and apply it",
		Long: `Ask the running service to read its config file again (as SIGHUP does) and
apply it: folds added are started, folds removed are stopped (their data stays),
folds whose table changed are stopped and started again (a new scope or
transform chain rebuilds them), the others go on untouched. The folds to start
are validated first; a file that does not load, or a fold that would not start,
is refused with its errors (exit 1) and nothing changes. Settings only a
restart applies (NATS, the HTTP API, data_dir, the log) are named.`,
		Example: `  slipstream reload
  slipstream reload --api 127.0.0.1:7070 --json`,
		Args: exactArgs(),
	}
	client := apiFlags(c.Flags())
	jsonFlag(c, &asJSON, "print {added, removed, restarted, unchanged, need_restart} as JSON")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		resp, err := client.do(http.MethodPost, "/v1/reload", 5*time.Minute)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body map[string]any
		if resp.StatusCode != http.StatusOK {
			if json.NewDecoder(resp.Body).Decode(&body) == nil && body["error"] != nil {
				return fmt.Errorf("%s: %v", resp.Status, body["error"])
			}
			return fmt.Errorf("%s", resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return fmt.Errorf("reading the service's answer: %w", err)
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), body)
		}
		out := cmd.OutOrStdout()
		for _, k := range []string{"added", "removed", "restarted", "unchanged", "need_restart"} {
			if list, ok := body[k].([]any); ok && len(list) > 0 {
				fmt.Fprintf(out, "%-13s %v\n", strings.ReplaceAll(k, "_", " "), list)
			}
		}
		fmt.Fprintln(out, "reloaded")
		return nil
	}
	return c
}
