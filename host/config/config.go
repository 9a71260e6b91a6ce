// Package config loads, defaults and validates the slipstream service
// configuration: one TOML file with the NATS connection, the HTTP API, the
// settings of buckets to create, and the [[fold]] tables.
//
// Every problem is reported as an *Error naming file, line and key
// (slipstream.toml:14: fold[1].scope[0]: invalid subject filter "route..x":
// empty token), and all problems of a file are reported together as Errors.
// Unknown keys are errors. Relative paths in the file are resolved against
// the file's directory.
//
// The package reads only the config file and the HTTP API's token file, and
// checks that the other files it names exist; it never connects to NATS,
// starts plugins, or reads WASM modules or TLS keys.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
	"github.com/slipstreamkv/slipstream/host/fold"
)

// Config is the whole service configuration.
type Config struct {
	// Path is the absolute path of the loaded file; relative paths in the
	// file are resolved against its directory.
	Path string `toml:"-"`
	// DataDir holds the fold generations and the embedded server's data.
	// Default "data".
	DataDir string `toml:"data_dir"`
	// PluginDir is where store plugins slipstream-store-NAME are looked up.
	// Empty means the running executable's directory, then $PATH.
	PluginDir string `toml:"plugin_dir"`
	// Log configures the service log.
	Log Log `toml:"log"`
	// NATS configures the connection, or the embedded server when URL is empty.
	NATS NATS `toml:"nats"`
	// HTTP configures the local HTTP API.
	HTTP HTTP `toml:"http"`
	// Buckets are [bucket.NAME] tables: the settings for creating a bucket
	// that does not exist. An existing bucket is used as it is.
	Buckets map[string]Bucket `toml:"bucket"`
	// Folds are the [[fold]] tables; at least one is required.
	Folds []Fold `toml:"fold"`
}

// Log configures the service log.
type Log struct {
	Level  string `toml:"level"`  // debug, info (default), warn or error
	Format string `toml:"format"` // auto (default: text on a terminal, else json), text or json
}

// NATS configures the NATS connection.
type NATS struct {
	// URL is the server to connect to: nats://, tls://, ws://, wss:// or
	// host:port, optionally with user:password@, or a comma-separated list.
	// Empty starts an embedded server with JetStream.
	URL string `toml:"url"`
	// Listen is the embedded server's client address, default
	// "127.0.0.1:4222". It must be a loopback address unless AllowRemote.
	Listen      string `toml:"listen"`
	AllowRemote bool   `toml:"allow_remote"`
	// StoreDir is the embedded server's JetStream directory, default
	// DataDir/nats.
	StoreDir string `toml:"store_dir"`
	// Creds is a credentials (JWT and seed) file. At most one of Creds,
	// Token and NKeySeed is set.
	Creds    string `toml:"creds"`
	Token    string `toml:"token"`
	NKeySeed string `toml:"nkey_seed"` // path to an nkey seed file
	// TLSCA, TLSCert and TLSKey are PEM files; TLSCert and TLSKey go together.
	TLSCA   string `toml:"tls_ca"`
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Name is the connection name the server shows, default "slipstream".
	Name string `toml:"name"`
	// ConnectTimeout bounds each connection attempt, default 5s.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// RequestTimeout bounds each JetStream API request, default 10s.
	RequestTimeout Duration `toml:"request_timeout"`
}

// HTTP configures the local HTTP API.
type HTTP struct {
	// Listen is the API address, default "127.0.0.1:7070"; "off" disables
	// the API. It must be a loopback address unless AllowRemote, and a
	// non-loopback address also needs TokenFile.
	Listen      string `toml:"listen"`
	AllowRemote bool   `toml:"allow_remote"`
	// TokenFile is a file holding the bearer token that every request but
	// GET /livez must carry (Authorization: Bearer TOKEN). Empty: no token
	// is asked for. The file is read when the config is loaded, into Token;
	// a change takes effect at the next start.
	TokenFile string `toml:"token_file"`
	// Token is the content of TokenFile without surrounding whitespace, or
	// empty. It prints as [redacted]; compare string(Token).
	Token Secret `toml:"-"`
	// TLSCert and TLSKey are PEM files (both or neither): with them the API
	// is served over HTTPS only.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
}

// Secret is a credential read from a file the config names. Its String,
// GoString, LogValue and MarshalText hide it, so that a Config printed,
// logged or encoded whole does not show it.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string { return redacted }

// GoString hides the secret from %#v.
func (s Secret) GoString() string { return strconv.Quote(redacted) }

// LogValue hides the secret from log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText hides the secret from encoders such as encoding/json.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// HTTPOff is the HTTP.Listen value that disables the HTTP API.
const HTTPOff = "off"

// Bucket holds the settings used to create a KV bucket that does not exist.
type Bucket struct {
	History int `toml:"history"` // values kept per key, 1..64, default 1
	// MaxBytes caps the bucket's size; -1 (the default, also written 0)
	// means unlimited.
	MaxBytes ByteSize `toml:"max_bytes"`
	MaxAge   Duration `toml:"max_age"` // 0 (the default) keeps values forever
	// MaxValueSize caps one value; -1 (the default, also written 0) means
	// unlimited.
	MaxValueSize ByteSize `toml:"max_value_size"`
	Replicas     int      `toml:"replicas"` // 1..5, default 1
	Storage      string   `toml:"storage"`  // file (default) or memory
	// Discard says what a full bucket does: new (the default) refuses
	// writes, old drops the oldest values.
	Discard     string `toml:"discard"`
	Description string `toml:"description"`
}

// Fold is one [[fold]]: a scope of a bucket, transformed, kept in a store.
type Fold struct {
	Name   string `toml:"name"`   // required, unique, [A-Za-z0-9_-]{1,64}
	Bucket string `toml:"bucket"` // required KV bucket name
	// Scope lists key filters in NATS subject syntax (route.>, app.*.v1);
	// empty means the whole bucket. A single string is accepted.
	Scope []string `toml:"scope"`
	// Store is a plugin name (run as slipstream-store-NAME) or, if it
	// contains '/', a path to the plugin binary, made absolute on loading.
	Store string `toml:"store"`
	// StoreConfig is passed to the plugin as JSON, uninterpreted.
	StoreConfig map[string]any `toml:"store_config"`
	Batch       Batch          `toml:"batch"`
	// Transforms are the [[fold.transform]] modules, applied in order.
	Transforms []Transform `toml:"transform"`
	// TombstoneHorizon is how long delete markers are assumed to be
	// replayable: a fold away longer reconciles before it is ready. 0 is
	// 30 minutes, or the bucket's marker TTL when that is shorter.
	TombstoneHorizon Duration `toml:"tombstone_horizon"`
	// ReconcileEvery is the period of reconciles; 0 means never.
	ReconcileEvery Duration `toml:"reconcile_every"`
	// BootstrapFrom names an artifact a new generation of the fold (its
	// first, or a rebuild's) is filled from before the stream's tail is
	// read: a file (made absolute on loading; it need not exist yet), the
	// http(s):// URL of a peer's GET /v1/folds/NAME/artifact, or a series
	// nats-object://BUCKET/NAME in a NATS Object Store. A missing, foreign
	// or damaged artifact is logged and the bucket is re-listed instead.
	// Empty: always re-list.
	BootstrapFrom string `toml:"bootstrap_from"`
	// Export is the fold's periodic export to an Object Store series.
	Export Export `toml:"export"`
	// ReadCache bounds the read cache of the fold's published generation;
	// 0 turns it off. Default 64MiB.
	ReadCache ByteSize `toml:"read_cache"`
	// ChangeBuffer bounds the recent changes held for change streams to
	// resume from; 0 holds none (a stream then resumes only from the
	// newest position). Default 16MiB.
	ChangeBuffer ByteSize `toml:"change_buffer"`
	// BulkLoad lets a store that declares the bulk-load capability fill a
	// new generation in load mode (default true).
	BulkLoad bool `toml:"bulk_load"`
}

// Batch bounds the batches a fold applies to its store. A batch is flushed
// at whichever limit it reaches first.
type Batch struct {
	MaxEntries int      `toml:"max_entries"` // 1..1000000, default 1000
	MaxBytes   ByteSize `toml:"max_bytes"`   // 1KiB..256MiB, default 4MiB
	Window     Duration `toml:"window"`      // >0 and <=10s, default 10ms
}

// Export is a fold's periodic export: every period, one node of those that
// export the fold to the same series takes the series' lease, publishes an
// artifact of its fold when it holds a later cursor than the series'
// pointer, and prunes the payloads the pointer no longer needs.
type Export struct {
	// To is the series, nats-object://BUCKET/NAME, on the fold's NATS
	// server; its buckets are created when missing. Empty: no periodic
	// export.
	To string `toml:"to"`
	// Every is the period of the export rounds and the lease's duration,
	// 1s to 7 days (whole seconds), default 1h.
	Every Duration `toml:"every"`
	// PruneGrace is how long a payload the pointer no longer names is kept
	// for readers still downloading it, at least 10m (the window in which an
	// upload may still be named), default 1h.
	PruneGrace Duration `toml:"prune_grace"`
	// Replicas of the buckets created for the series, 1 to 5, default 1.
	Replicas int `toml:"replicas"`
}

// Export defaults and bounds.
const (
	DefaultExportEvery      = time.Hour
	DefaultExportPruneGrace = time.Hour
	// MinExportPruneGrace is the Object Store's publish window: a payload
	// younger than it may still be about to be named by its exporter.
	MinExportPruneGrace = 10 * time.Minute
	maxExportEvery      = 7 * 24 * time.Hour
)

// Transform is one WASM module of a fold's transform chain.
type Transform struct {
	// Module is the path of a .wasm file, which must exist; made absolute on
	// loading.
	Module string `toml:"module"`
	// Name defaults to the module's file name without .wasm.
	Name string `toml:"name"`
	// Config is the module's configuration table, uninterpreted.
	Config map[string]any `toml:"config"`
	// OnError says what a guest error does: stall (the default) stalls the
	// fold with the error, skip drops the update and counts it.
	OnError string `toml:"on_error"`
}

// Load reads, parses, defaults and validates the config file at path. A read
// failure is returned as the os error; everything else as Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses, defaults and validates data, the content of the config file at
// path. path names the file in errors, and its directory is the base of
// relative paths (the working directory if path is empty); files the config
// names are checked on disk. On failure it returns Errors, each with Line >= 1.
func Parse(path string, data []byte) (*Config, error) {
	loc := newLocator(data)
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		return nil, Errors{syntaxError(path, data, loc, err)}
	}
	errs := newCollector(path, loc)
	cfg := new(Config)
	cfg.setDefaults()
	(&decoder{errs: errs}).table(nil, tree, reflect.ValueOf(cfg).Elem())
	dir := "."
	if path != "" {
		cfg.Path = path
		if abs, err := filepath.Abs(path); err == nil {
			cfg.Path = abs
		}
		dir = filepath.Dir(cfg.Path)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	check(cfg, dir, errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Fold returns the fold with the given name.
func (c *Config) Fold(name string) (*Fold, bool) {
	for i := range c.Folds {
		if c.Folds[i].Name == name {
			return &c.Folds[i], true
		}
	}
	return nil, false
}

const (
	defaultNATSListen = "127.0.0.1:4222"
	defaultHTTPListen = "127.0.0.1:7070"
)

func (c *Config) setDefaults() {
	c.DataDir = "data"
	c.Log = Log{Level: "info", Format: "auto"}
	c.NATS.Listen = defaultNATSListen
	c.NATS.Name = "slipstream"
	c.NATS.ConnectTimeout = Duration(5 * time.Second)
	c.NATS.RequestTimeout = Duration(10 * time.Second)
	c.HTTP.Listen = defaultHTTPListen
}

func (b *Bucket) setDefaults() {
	*b = Bucket{History: 1, MaxBytes: unlimited, MaxValueSize: unlimited, Replicas: 1, Storage: "file", Discard: "new"}
}

func (f *Fold) setDefaults() {
	f.BulkLoad = true
	f.Export = Export{Every: Duration(DefaultExportEvery), PruneGrace: Duration(DefaultExportPruneGrace), Replicas: 1}
	f.ReadCache, f.ChangeBuffer = fold.DefaultReadCache, fold.DefaultChangeBuffer
	f.Batch = Batch{MaxEntries: fold.DefaultMaxEntries, MaxBytes: fold.DefaultMaxBytes, Window: Duration(fold.DefaultWindow)}
}

func (t *Transform) setDefaults() {
	t.OnError = "stall"
}

// syntaxError turns a toml.Decode error into an *Error. The parser names the
// last key without array indexes (fold.name); the locator, run on the text
// above the error, supplies the index of the table the key is in.
func syntaxError(file string, data []byte, loc *locator, err error) *Error {
	line, msg, lastKey := 1, err.Error(), ""
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line, msg, lastKey = pe.Position.Line, pe.Message, pe.LastKey
	}
	line = max(1, min(line, strings.Count(string(data), "\n")+1))
	table := loc.tableAt(line)
	key := table.String()
	if lastKey != "" {
		key = lastKey
		s := &scanner{src: []byte(lastKey)}
		if names, ok := s.key(); ok && s.eof() {
			key = withIndexes(names, table).String()
		}
	}
	return &Error{File: file, Line: line, Key: printable(key), Msg: printable(msg)}
}

// printable escapes the control characters the parser may quote from the
// file, so that an error message cannot garble a terminal.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			fmt.Fprintf(&b, `\x%02x`, r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// withIndexes returns names as a path, with the indexes of table when names
// starts with table's keys.
func withIndexes(names []string, table path) path {
	tn := table.names()
	var p path
	if len(tn) <= len(names) && slices.Equal(tn, names[:len(tn)]) {
		p, names = table, names[len(tn):]
	}
	for _, n := range names {
		p = p.key(n)
	}
	return p
}
