package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipstreamkv/slipstream/host/objstore"
)

// checker validates a decoded Config, fills in the defaults that depend on
// other values, and makes paths absolute.
type checker struct {
	dir  string // the config file's directory
	errs *collector
}

var (
	namePattern   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	bucketPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

func check(c *Config, dir string, errs *collector) {
	k := &checker{dir: dir, errs: errs}
	var root path
	if c.DataDir == "" {
		k.errs.add(root.key("data_dir"), `must not be empty; the default is "data"`)
	}
	c.DataDir = k.abs(c.DataDir)
	if c.PluginDir != "" {
		c.PluginDir = k.abs(c.PluginDir)
		if fi, err := os.Stat(c.PluginDir); err != nil || !fi.IsDir() {
			k.errs.add(root.key("plugin_dir"), "%q is not a directory", c.PluginDir)
		}
	}
	k.oneOf(root.key("log").key("level"), c.Log.Level, "debug", "info", "warn", "error")
	k.oneOf(root.key("log").key("format"), c.Log.Format, "auto", "text", "json")
	k.nats(root.key("nats"), &c.NATS, c.DataDir)
	k.http(root.key("http"), &c.HTTP)
	for _, name := range slices.Sorted(maps.Keys(c.Buckets)) {
		b := c.Buckets[name]
		k.bucket(root.key("bucket").key(name), name, &b)
		c.Buckets[name] = b
	}
	if len(c.Folds) == 0 {
		k.errs.add(root.key("fold"), "no [[fold]] tables: at least one fold is required")
	}
	names := make(map[string]int)
	for i := range c.Folds {
		p := root.key("fold").index(i)
		f := &c.Folds[i]
		k.fold(p, f)
		if j, dup := names[f.Name]; dup && f.Name != "" {
			first := root.key("fold").index(j).key("name")
			k.errs.add(p.key("name"), "duplicate fold name %q (also %s, line %d)", f.Name, first, k.errs.loc.line(first))
		} else {
			names[f.Name] = i
		}
	}
}

func (k *checker) nats(p path, n *NATS, dataDir string) {
	if n.URL != "" {
		k.natsURL(p.key("url"), n.URL)
	}
	k.listen(p.key("listen"), n.Listen, n.AllowRemote)
	if n.StoreDir == "" {
		n.StoreDir = filepath.Join(dataDir, "nats")
	} else {
		n.StoreDir = k.abs(n.StoreDir)
	}
	var auth []string
	for _, a := range []struct {
		key string
		set bool
	}{{"creds", n.Creds != ""}, {"token", n.Token != ""}, {"nkey_seed", n.NKeySeed != ""}} {
		if !a.set {
			continue
		}
		if len(auth) > 0 {
			k.errs.add(p.key(a.key), "%s and %s are alternatives; set only one of creds, token and nkey_seed", auth[0], a.key)
		}
		auth = append(auth, a.key)
	}
	k.file(p.key("creds"), &n.Creds)
	k.file(p.key("nkey_seed"), &n.NKeySeed)
	k.file(p.key("tls_ca"), &n.TLSCA)
	k.file(p.key("tls_cert"), &n.TLSCert)
	k.file(p.key("tls_key"), &n.TLSKey)
	if n.TLSCert != "" && n.TLSKey == "" {
		k.errs.add(p.key("tls_key"), "missing: tls_cert is set, so tls_key is required")
	}
	if n.TLSKey != "" && n.TLSCert == "" {
		k.errs.add(p.key("tls_cert"), "missing: tls_key is set, so tls_cert is required")
	}
	k.positive(p.key("connect_timeout"), n.ConnectTimeout)
	k.positive(p.key("request_timeout"), n.RequestTimeout)
}

// http checks the API's listen address, its token file (read into h.Token)
// and its TLS files. A non-loopback address needs a token; that is asked for
// once allow_remote is set, so that a listen address given by mistake is
// reported as such first.
func (k *checker) http(p path, h *HTTP) {
	remote := false
	if h.Listen != HTTPOff {
		remote = k.listen(p.key("listen"), h.Listen, h.AllowRemote)
	}
	if k.file(p.key("token_file"), &h.TokenFile) && h.TokenFile != "" {
		k.token(p.key("token_file"), h)
	}
	if remote && h.AllowRemote && h.TokenFile == "" {
		k.errs.add(p.key("token_file"), "missing: listen %q is not a loopback address, so the API needs a bearer token; name a file holding it", h.Listen)
	}
	k.file(p.key("tls_cert"), &h.TLSCert)
	k.file(p.key("tls_key"), &h.TLSKey)
	if h.TLSCert != "" && h.TLSKey == "" {
		k.errs.add(p.key("tls_key"), "missing: tls_cert is set, so tls_key is required")
	}
	if h.TLSKey != "" && h.TLSCert == "" {
		k.errs.add(p.key("tls_cert"), "missing: tls_key is set, so tls_cert is required")
	}
}

// maxTokenFile bounds the size of a token file: a token is a line, and a
// larger file is more likely the wrong file.
const maxTokenFile = 4 << 10

// token reads h.TokenFile, an existing file, into h.Token. Messages never
// quote the file's content.
func (k *checker) token(p path, h *HTTP) {
	f, err := os.Open(h.TokenFile)
	if err != nil {
		k.errs.add(p, "%v", err)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		k.errs.add(p, "%v", err)
		return
	}
	if len(data) > maxTokenFile {
		k.errs.add(p, "%s is larger than %d bytes; it should hold one token", h.TokenFile, maxTokenFile)
		return
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		k.errs.add(p, "%s holds no token: it is empty or only whitespace", h.TokenFile)
		return
	}
	for i := 0; i < len(tok); i++ {
		// A header carries visible ASCII; a space or a second line would
		// make a token no client can send as written.
		if tok[i] <= ' ' || tok[i] > '~' {
			k.errs.add(p, "the token in %s has a space, a control or a non-ASCII character at byte %d; a bearer token is one word of visible ASCII", h.TokenFile, i+1)
			return
		}
	}
	h.Token = Secret(tok)
}

// natsURL checks each server of a comma-separated list. Messages show URLs
// with their passwords redacted.
func (k *checker) natsURL(p path, s string) {
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			k.errs.add(p, "empty server in the list %q", redact(s))
			return
		}
		raw := entry
		if !strings.Contains(entry, "://") {
			raw = "nats://" + entry
		}
		u, err := url.Parse(raw)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			k.errs.add(p, "invalid server URL %q: %v", redact(entry), err)
			return
		}
		switch {
		case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
			k.errs.add(p, "invalid server URL %q: scheme %q; want nats, tls, ws or wss", u.Redacted(), u.Scheme)
			return
		case u.Hostname() == "":
			k.errs.add(p, "invalid server URL %q: no host", u.Redacted())
			return
		}
	}
}

// redact hides the user information of every server in a URL list.
func redact(s string) string {
	entries := strings.Split(s, ",")
	for i, e := range entries {
		scheme, rest, ok := strings.Cut(e, "://")
		if !ok {
			scheme, rest = "", e
		}
		if j := strings.LastIndex(rest, "@"); j >= 0 {
			rest = "xxxxx" + rest[j:]
		}
		if ok {
			rest = scheme + "://" + rest
		}
		entries[i] = rest
	}
	return strings.Join(entries, ",")
}

// listen checks a host:port listen address, which must be on a loopback
// interface unless allowRemote. It reports whether addr is a valid address
// that is not on a loopback interface.
func (k *checker) listen(p path, addr string, allowRemote bool) (remote bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		k.errs.add(p, `invalid address %q: want host:port, such as "127.0.0.1:7070"`, addr)
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		k.errs.add(p, "invalid address %q: port %q is not a number from 0 to 65535", addr, port)
		return false
	}
	ip := net.ParseIP(host)
	remote = host != "localhost" && (ip == nil || !ip.IsLoopback())
	if remote && !allowRemote {
		k.errs.add(p, "%q is not a loopback address; set allow_remote = true to accept remote connections", addr)
	}
	return remote
}

func (k *checker) bucket(p path, name string, b *Bucket) {
	if !bucketPattern.MatchString(name) {
		k.errs.add(p, "invalid bucket name %q: use letters, digits, '_' and '-'", name)
	}
	k.intRange(p.key("history"), b.History, 1, 64)
	if b.MaxBytes == 0 {
		b.MaxBytes = unlimited
	}
	if b.MaxBytes < unlimited {
		k.errs.add(p.key("max_bytes"), "%d is negative; use -1 or 0 for unlimited", b.MaxBytes)
	}
	if b.MaxValueSize == 0 {
		b.MaxValueSize = unlimited
	}
	if b.MaxValueSize < unlimited || b.MaxValueSize > math.MaxInt32 {
		k.errs.add(p.key("max_value_size"), "%d is out of range: want -1 or 0 (unlimited) up to %d bytes", b.MaxValueSize, math.MaxInt32)
	}
	k.notNegative(p.key("max_age"), b.MaxAge)
	k.intRange(p.key("replicas"), b.Replicas, 1, 5)
	k.oneOf(p.key("storage"), b.Storage, "file", "memory")
	k.oneOf(p.key("discard"), b.Discard, "new", "old")
}

func (k *checker) fold(p path, f *Fold) {
	switch {
	case f.Name == "":
		k.errs.add(p.key("name"), "missing: every fold needs a name")
	case !namePattern.MatchString(f.Name):
		k.errs.add(p.key("name"), "invalid fold name %q: use 1 to 64 letters, digits, '_' and '-'", f.Name)
	}
	switch {
	case f.Bucket == "":
		k.errs.add(p.key("bucket"), "missing: name the KV bucket to fold")
	case !bucketPattern.MatchString(f.Bucket):
		k.errs.add(p.key("bucket"), "invalid bucket name %q: use letters, digits, '_' and '-'", f.Bucket)
	}
	for i, s := range f.Scope {
		if problem := filterProblem(s); problem != "" {
			k.errs.add(p.key("scope").index(i), "invalid subject filter %q: %s", s, problem)
			continue
		}
		for j, prev := range f.Scope[:i] {
			if filterProblem(prev) == "" && filtersOverlap(prev, s) {
				k.errs.add(p.key("scope").index(i), "subject filter %q overlaps %q (scope[%d]); NATS refuses overlapping filters on one consumer", s, prev, j)
				break
			}
		}
	}
	switch {
	case f.Store == "":
		k.errs.add(p.key("store"), `missing: set a plugin name such as "sqlite" or "pebble", or a path containing '/'`)
	case strings.Contains(f.Store, "/"):
		f.Store = k.abs(f.Store)
	case !namePattern.MatchString(f.Store):
		k.errs.add(p.key("store"), `invalid store %q: want a plugin name such as "sqlite" (letters, digits, '_' and '-') or a path containing '/'`, f.Store)
	}
	for _, key := range slices.Sorted(maps.Keys(f.StoreConfig)) {
		k.jsonable(p.key("store_config").key(key), f.StoreConfig[key])
	}
	b := p.key("batch")
	k.intRange(b.key("max_entries"), f.Batch.MaxEntries, 1, 1_000_000)
	if f.Batch.MaxBytes < 1<<10 || f.Batch.MaxBytes > 256<<20 {
		k.errs.add(b.key("max_bytes"), "%s is out of range: want 1KiB to 256MiB", f.Batch.MaxBytes)
	}
	if f.Batch.Window <= 0 || time.Duration(f.Batch.Window) > 10*time.Second {
		k.errs.add(b.key("window"), "%s is out of range: want more than 0 and at most 10s", f.Batch.Window)
	}
	switch u := f.BootstrapFrom; {
	case u == "":
	case strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://"):
		if pu, err := url.Parse(u); err != nil || pu.Host == "" {
			k.errs.add(p.key("bootstrap_from"), "invalid URL %q: want http(s)://HOST/v1/folds/NAME/artifact", u)
		}
	case strings.HasPrefix(u, objstore.Scheme+"://"):
		k.series(p.key("bootstrap_from"), u)
	case strings.Contains(u, "://"):
		k.errs.add(p.key("bootstrap_from"), "unsupported source %q: want a file path, an http(s):// URL or a nats-object://BUCKET/NAME series", u)
	default:
		f.BootstrapFrom = k.abs(u)
	}
	k.export(p.key("export"), &f.Export)
	for key, v := range map[string]ByteSize{"read_cache": f.ReadCache, "change_buffer": f.ChangeBuffer} {
		if v < 0 || v > 64<<30 {
			k.errs.add(p.key(key), "%s is out of range: want 0 (off) to 64GiB", v)
		}
	}
	k.notNegative(p.key("tombstone_horizon"), f.TombstoneHorizon)
	k.notNegative(p.key("reconcile_every"), f.ReconcileEvery)
	names := make(map[string]int)
	for i := range f.Transforms {
		tp := p.key("transform").index(i)
		t := &f.Transforms[i]
		if t.Module == "" {
			k.errs.add(tp.key("module"), "missing: name the .wasm file of the transform")
		} else if t.Name == "" {
			t.Name = strings.TrimSuffix(filepath.Base(t.Module), ".wasm")
		}
		k.file(tp.key("module"), &t.Module)
		if j, dup := names[t.Name]; dup && t.Name != "" {
			k.errs.add(tp.key("name"), "duplicate transform name %q (also transform[%d]); set name to tell them apart", t.Name, j)
		} else {
			names[t.Name] = i
		}
		k.oneOf(tp.key("on_error"), t.OnError, "stall", "skip")
	}
}

// series checks a nats-object://BUCKET/NAME URL.
func (k *checker) series(p path, u string) {
	if _, err := objstore.ParseURL(u); err != nil {
		k.errs.add(p, "%s", strings.TrimPrefix(err.Error(), "objstore: "))
	}
}

func (k *checker) export(p path, e *Export) {
	if e.To != "" {
		k.series(p.key("to"), e.To)
	}
	switch every := time.Duration(e.Every); {
	case every < time.Second || every > maxExportEvery:
		k.errs.add(p.key("every"), "%s is out of range: want 1s to 168h", e.Every)
	case every%time.Second != 0:
		k.errs.add(p.key("every"), "%s is not a whole number of seconds (the lease's unit)", e.Every)
	}
	if time.Duration(e.PruneGrace) < MinExportPruneGrace {
		k.errs.add(p.key("prune_grace"), "%s is too short: at least %s, the window in which an upload may still be published", e.PruneGrace, MinExportPruneGrace)
	}
	k.intRange(p.key("replicas"), e.Replicas, 1, 5)
}

// jsonable reports the floats JSON cannot carry (nan and inf) in a value that
// is passed on as JSON.
func (k *checker) jsonable(p path, v any) {
	switch v := v.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			k.errs.add(p, "%v cannot be passed to the plugin as JSON", v)
		}
	case map[string]any:
		for _, key := range slices.Sorted(maps.Keys(v)) {
			k.jsonable(p.key(key), v[key])
		}
	case []any:
		for i, e := range v {
			k.jsonable(p.index(i), e)
		}
	case []map[string]any:
		for i, e := range v {
			k.jsonable(p.index(i), e)
		}
	}
}

// file makes *v absolute and checks that it names an existing file. An empty
// *v is left alone. It reports whether it found no problem.
func (k *checker) file(p path, v *string) bool {
	if *v == "" {
		return true
	}
	written := *v
	*v = k.abs(written)
	fi, err := os.Stat(*v)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		where := ""
		if *v != written {
			where = fmt.Sprintf(" (looked for %s)", *v)
		}
		k.errs.add(p, "file %q does not exist%s", written, where)
	case err != nil:
		k.errs.add(p, "%v", err)
	case fi.IsDir():
		k.errs.add(p, "%q is a directory, not a file", written)
	default:
		return true
	}
	return false
}

func (k *checker) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(k.dir, p)
}

func (k *checker) oneOf(p path, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		last := len(allowed) - 1
		k.errs.add(p, "invalid value %q: want %s or %s", v, strings.Join(allowed[:last], ", "), allowed[last])
	}
}

func (k *checker) intRange(p path, v, lo, hi int) {
	if v < lo || v > hi {
		k.errs.add(p, "%d is out of range: want %d to %d", v, lo, hi)
	}
}

func (k *checker) positive(p path, d Duration) {
	if d <= 0 {
		k.errs.add(p, "%s is out of range: want more than 0", d)
	}
}

func (k *checker) notNegative(p path, d Duration) {
	if d < 0 {
		k.errs.add(p, "%s is negative", d)
	}
}
