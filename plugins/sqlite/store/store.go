package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
	"github.com/slipstreamkv/slipstream/sdk"
)

// Version is reported to the host in Info.
const Version = "1.0.0"

// layoutVersion is PRAGMA user_version of a database this package created.
const layoutVersion = 1

// rowsPerStatement is how many rows one multi-row statement carries: large
// enough to amortize the cgo and statement overhead, small enough to stay
// far below SQLite's bound-parameter limit.
const rowsPerStatement = 128

const schema = `
CREATE TABLE IF NOT EXISTS kv (
    id       INTEGER PRIMARY KEY,
    key      BLOB NOT NULL UNIQUE,
    value    BLOB NOT NULL,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    cursor INTEGER NOT NULL,
    keys   INTEGER NOT NULL,
    bytes  INTEGER NOT NULL
);
INSERT OR IGNORE INTO state (id, cursor, keys, bytes) VALUES (1, 0, 0, 0);
`

// Config is the fold's store_config table.
type Config struct {
	Synchronous       string `json:"synchronous"`
	WALAutocheckpoint int    `json:"wal_autocheckpoint"`
	CacheSize         int64  `json:"cache_size"`
	BusyTimeout       int    `json:"busy_timeout"`
}

func parseConfig(raw []byte) (Config, error) {
	c := Config{Synchronous: "normal", WALAutocheckpoint: 16384, CacheSize: 64 << 20, BusyTimeout: 5000}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("sqlite store_config: %w", err)
	}
	switch c.Synchronous = strings.ToLower(c.Synchronous); c.Synchronous {
	case "normal", "full", "off":
	default:
		return c, fmt.Errorf("sqlite store_config: synchronous must be normal, full or off, not %q", c.Synchronous)
	}
	if c.WALAutocheckpoint < 0 || c.CacheSize < 0 || c.BusyTimeout < 0 {
		return c, errors.New("sqlite store_config: wal_autocheckpoint, cache_size and busy_timeout must not be negative")
	}
	return c, nil
}

// Store is a fold kept in one SQLite database.
type Store struct {
	log *slog.Logger
	w   *sql.DB // the writer: one connection
	r   *sql.DB // readers: a small pool, query-only

	mu    sync.Mutex // guards the counters below, written only by Apply
	keys  int64
	bytes int64

	get *sql.Stmt
}

// New returns an unopened store.
func New() *Store { return &Store{log: slog.New(slog.DiscardHandler)} }

// SetLogger implements sdk.LoggerSetter.
func (s *Store) SetLogger(l *slog.Logger) { s.log = l }

// Describe implements sdk.Describer.
func (s *Store) Describe() sdk.Info {
	return sdk.Info{Name: "sqlite", Version: Version, Capabilities: []string{sdk.CapCompact, sdk.CapKeysOnlyScan}}
}

// Open implements sdk.Store.
func (s *Store) Open(ctx context.Context, dir string, config []byte) (sdk.State, error) {
	cfg, err := parseConfig(config)
	if err != nil {
		return sdk.State{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sdk.State{}, err
	}
	path := filepath.Join(dir, "fold.db")
	dsn := func(extra string) string {
		q := url.Values{}
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", cfg.Synchronous)
		q.Set("_busy_timeout", fmt.Sprint(cfg.BusyTimeout))
		return "file:" + path + "?" + q.Encode() + extra
	}
	w, err := sql.Open("sqlite3", dsn("&_txlock=immediate"))
	if err != nil {
		return sdk.State{}, err
	}
	w.SetMaxOpenConns(1)
	st, err := s.init(ctx, w, cfg)
	if err != nil {
		w.Close()
		return sdk.State{}, fmt.Errorf("sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite3", dsn("&_query_only=1"))
	if err != nil {
		w.Close()
		return sdk.State{}, err
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	get, err := r.PrepareContext(ctx, `SELECT value, revision FROM kv WHERE key = ?`)
	if err != nil {
		w.Close()
		r.Close()
		return sdk.State{}, fmt.Errorf("sqlite %s: %w", path, err)
	}
	s.w, s.r, s.get = w, r, get
	s.log.Debug("sqlite fold opened", "path", path, "cursor", st.Cursor, "keys", s.keys)
	return st, nil
}

// init creates or checks the schema and loads the state.
func (s *Store) init(ctx context.Context, w *sql.DB, cfg Config) (sdk.State, error) {
	var version int
	if err := w.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return sdk.State{}, err
	}
	if version > layoutVersion {
		return sdk.State{}, fmt.Errorf("database layout version %d is newer than this plugin's (%d)", version, layoutVersion)
	}
	pragmas := fmt.Sprintf(`PRAGMA wal_autocheckpoint=%d; PRAGMA cache_size=-%d;`, cfg.WALAutocheckpoint, cfg.CacheSize/1024)
	if _, err := w.ExecContext(ctx, pragmas+schema+fmt.Sprintf(`PRAGMA user_version=%d;`, layoutVersion)); err != nil {
		return sdk.State{}, err
	}
	st := sdk.State{Meta: map[string][]byte{}}
	if err := w.QueryRowContext(ctx, `SELECT cursor, keys, bytes FROM state WHERE id = 1`).Scan(
		&st.Cursor, &s.keys, &s.bytes); err != nil {
		return sdk.State{}, err
	}
	rows, err := w.QueryContext(ctx, `SELECT name, value FROM meta`)
	if err != nil {
		return sdk.State{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var value []byte
		if err := rows.Scan(&name, &value); err != nil {
			return sdk.State{}, err
		}
		st.Meta[name] = value
	}
	return st, rows.Err()
}

func (s *Store) opened() error {
	if s.w == nil {
		return sdk.ErrClosed
	}
	return nil
}

// Apply implements sdk.Store: the batch, its cursor and its metadata in one
// transaction. Only the last mutation of each key matters, so the batch is
// reduced to one mutation per key and written in key order, which touches
// each B-tree page once instead of once per row.
func (s *Store) Apply(ctx context.Context, b *sdk.Batch) error {
	if err := s.opened(); err != nil {
		return err
	}
	muts := lastPerKey(b.Mutations)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer tx.Rollback()

	var oldKeys, oldBytes, putBytes, puts int64
	for chunk := range slices.Chunk(muts, rowsPerStatement) {
		n, nb, err := existing(ctx, tx, chunk)
		if err != nil {
			return err
		}
		oldKeys, oldBytes = oldKeys+n, oldBytes+nb
	}
	var run []*sdk.Mutation
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		var err error
		if run[0].Op == sdk.OpPut {
			err = upsert(ctx, tx, run)
		} else {
			err = remove(ctx, tx, run)
		}
		run = run[:0]
		return err
	}
	for _, m := range muts {
		if m.Op == sdk.OpPut {
			puts++
			putBytes += int64(len(m.Key) + len(m.Value))
		}
		if len(run) > 0 && (run[0].Op != m.Op || len(run) == rowsPerStatement) {
			if err := flush(); err != nil {
				return err
			}
		}
		run = append(run, m)
	}
	if err := flush(); err != nil {
		return err
	}
	s.mu.Lock()
	keys, nbytes := s.keys-oldKeys+puts, s.bytes-oldBytes+putBytes
	s.mu.Unlock()
	if _, err := tx.ExecContext(ctx, `UPDATE state SET cursor = ?, keys = ?, bytes = ? WHERE id = 1`,
		int64(b.Cursor), keys, nbytes); err != nil {
		return fmt.Errorf("sqlite: cursor: %w", err)
	}
	for name, value := range b.Meta {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, nonNil(value)); err != nil {
			return fmt.Errorf("sqlite: meta: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	s.mu.Lock()
	s.keys, s.bytes = keys, nbytes
	s.mu.Unlock()
	return nil
}

// lastPerKey keeps the last mutation of each key, sorted by key.
func lastPerKey(ms []sdk.Mutation) []*sdk.Mutation {
	last := make(map[string]int, len(ms))
	for i := range ms {
		last[string(ms[i].Key)] = i
	}
	out := make([]*sdk.Mutation, 0, len(last))
	for _, i := range last {
		out = append(out, &ms[i])
	}
	slices.SortFunc(out, func(a, b *sdk.Mutation) int { return bytes.Compare(a.Key, b.Key) })
	return out
}

func placeholders(n int, group string) string {
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(group)
	}
	return sb.String()
}

// existing counts the rows and bytes the chunk's keys hold before the batch.
func existing(ctx context.Context, tx *sql.Tx, chunk []*sdk.Mutation) (n, nbytes int64, err error) {
	args := make([]any, len(chunk))
	for i, m := range chunk {
		args[i] = m.Key
	}
	q := `SELECT count(*), coalesce(sum(length(key) + length(value)), 0) FROM kv WHERE key IN (` +
		placeholders(len(chunk), "?") + `)`
	if err := tx.QueryRowContext(ctx, q, args...).Scan(&n, &nbytes); err != nil {
		return 0, 0, fmt.Errorf("sqlite: read existing keys: %w", err)
	}
	return n, nbytes, nil
}

func upsert(ctx context.Context, tx *sql.Tx, run []*sdk.Mutation) error {
	args := make([]any, 0, 3*len(run))
	for _, m := range run {
		args = append(args, m.Key, nonNil(m.Value), int64(m.Revision))
	}
	q := `INSERT INTO kv (key, value, revision) VALUES ` + placeholders(len(run), "(?,?,?)") +
		` ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision`
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("sqlite: put: %w", err)
	}
	return nil
}

func remove(ctx context.Context, tx *sql.Tx, run []*sdk.Mutation) error {
	args := make([]any, len(run))
	for i, m := range run {
		args[i] = m.Key
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM kv WHERE key IN (`+placeholders(len(run), "?")+`)`, args...); err != nil {
		return fmt.Errorf("sqlite: delete: %w", err)
	}
	return nil
}

// nonNil makes an empty value a zero-length BLOB rather than NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Get implements sdk.Store.
func (s *Store) Get(ctx context.Context, key []byte) (sdk.Entry, error) {
	if err := s.opened(); err != nil {
		return sdk.Entry{}, err
	}
	e := sdk.Entry{Key: key}
	var rev int64
	err := s.get.QueryRowContext(ctx, key).Scan(&e.Value, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	if err != nil {
		return sdk.Entry{}, fmt.Errorf("sqlite: get: %w", err)
	}
	e.Revision = uint64(rev)
	return e, nil
}

// Scan implements sdk.Store.
func (s *Store) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	if err := s.opened(); err != nil {
		return err
	}
	cols := "key, value, revision"
	if r.KeysOnly {
		cols = "key, revision"
	}
	var where []string
	var args []any
	bound := func(cond string, v []byte) {
		where = append(where, cond)
		args = append(args, v)
	}
	if len(r.Prefix) > 0 {
		bound("key >= ?", r.Prefix)
		if end := prefixEnd(r.Prefix); end != nil {
			bound("key < ?", end)
		}
	}
	if r.Start != nil {
		bound("key >= ?", r.Start)
	}
	if r.End != nil {
		bound("key < ?", r.End)
	}
	if r.After != nil {
		bound("key > ?", r.After)
	}
	q := `SELECT ` + cols + ` FROM kv`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY key`
	if r.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, r.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlite: scan: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e sdk.Entry
		var rev int64
		if r.KeysOnly {
			err = rows.Scan(&e.Key, &rev)
		} else {
			err = rows.Scan(&e.Key, &e.Value, &rev)
		}
		if err != nil {
			return fmt.Errorf("sqlite: scan: %w", err)
		}
		e.Revision = uint64(rev)
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// prefixEnd is the smallest key greater than every key with prefix p, or nil
// when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Stats implements sdk.Store.
func (s *Store) Stats(ctx context.Context) (sdk.Stats, error) {
	if err := s.opened(); err != nil {
		return sdk.Stats{}, err
	}
	s.mu.Lock()
	st := sdk.Stats{Keys: uint64(s.keys), Bytes: uint64(s.bytes)}
	s.mu.Unlock()
	var pages, size int64
	if err := s.r.QueryRowContext(ctx, `SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&pages, &size); err == nil {
		st.DiskBytes = uint64(pages * size)
	}
	return st, nil
}

// Compact implements sdk.Compacter: it folds the WAL into the database and
// truncates it, and refreshes the query planner's statistics.
func (s *Store) Compact(ctx context.Context) error {
	if err := s.opened(); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize;`)
	return err
}

// Close implements sdk.Store.
func (s *Store) Close(context.Context) error {
	if err := s.opened(); err != nil {
		return err
	}
	s.get.Close()
	err := errors.Join(s.r.Close(), s.w.Close())
	s.w, s.r, s.get = nil, nil, nil
	return err
}
