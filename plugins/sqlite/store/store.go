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
	"sync/atomic"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
	"github.com/slipstreamkv/slipstream/sdk"
)

// Version is reported to the host in Info.
const Version = "1.0.0"

// layoutVersion is PRAGMA user_version of a database this package created.
const layoutVersion = 2

// kvTable is the fold's table. Its unique index on key (kvIndex) is
// created with it, except during a bulk load, which builds it at the end.
const kvTable = `
CREATE TABLE kv (
    id       INTEGER PRIMARY KEY,
    key      BLOB NOT NULL,
    value    BLOB NOT NULL,
    revision INTEGER NOT NULL
);`

const kvIndex = `CREATE UNIQUE INDEX kv_key ON kv (key);`

// schema is the rest of a new database.
const schema = `
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    cursor  INTEGER NOT NULL,
    keys    INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    loading INTEGER NOT NULL DEFAULT 0
);
INSERT INTO state (id, cursor, keys, bytes) VALUES (1, 0, 0, 0);
`

// upgrades[v] brings a database of layout version v to v+1.
var upgrades = map[int]string{
	// Version 1 had no bulk load; its kv table declares key UNIQUE, which
	// serves as the index kv_key does in version 2.
	1: `ALTER TABLE state ADD COLUMN loading INTEGER NOT NULL DEFAULT 0;`,
}

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
	log  *slog.Logger
	cfg  Config
	path string   // fold.db
	raw  *rawConn // the writer, through the C API (raw.go); nil once closed
	r    *sql.DB  // readers: a small pool, query-only

	ckpt *checkpointer // background WAL checkpoints; nil if wal_autocheckpoint is 0

	wmu     sync.Mutex  // serializes the writers: Apply, BeginLoad, EndLoad, Compact
	loading atomic.Bool // a bulk load is under way (see load.go)
	// loads counts BeginLoads, raised before each commits: a read that
	// did not see loading set checks it did not change while it ran.
	loads atomic.Uint64

	mu    sync.Mutex // guards the counters below, written only under wmu
	keys  int64
	bytes int64

	get *sql.Stmt

	viewsMu sync.Mutex
	viewsTo *viewsConfig       // what views connect to (view.go); nil once closed
	views   map[*view]struct{} // the open views
}

// New returns an unopened store.
func New() *Store { return &Store{log: slog.New(slog.DiscardHandler)} }

// SetLogger implements sdk.LoggerSetter.
func (s *Store) SetLogger(l *slog.Logger) { s.log = l }

// Describe implements sdk.Describer.
func (s *Store) Describe() sdk.Info {
	return sdk.Info{Name: "sqlite", Version: Version}
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
	// This connection creates or upgrades the layout and reads the state;
	// every write after Open goes through raw, whose copy of the schema a
	// schema change on another connection would leave stale (SQLite checks
	// CREATE INDEX against that copy).
	defer w.Close()
	w.SetMaxOpenConns(1)
	st, err := s.init(ctx, w, cfg)
	if err != nil {
		return sdk.State{}, fmt.Errorf("sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite3", dsn("&_query_only=1"))
	if err != nil {
		return sdk.State{}, err
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	get, err := r.PrepareContext(ctx, qGet)
	if err != nil {
		r.Close()
		return sdk.State{}, fmt.Errorf("sqlite %s: %w", path, err)
	}
	raw, err := openRaw(path, cfg)
	if err != nil {
		get.Close()
		r.Close()
		return sdk.State{}, fmt.Errorf("sqlite %s: %w", path, err)
	}
	if cfg.WALAutocheckpoint > 0 {
		conn, err := openRaw(path, cfg)
		if err != nil {
			raw.close()
			get.Close()
			r.Close()
			return sdk.State{}, fmt.Errorf("sqlite %s: %w", path, err)
		}
		s.ckpt = startCheckpointer(conn, cfg.WALAutocheckpoint, s.log)
	}
	// The views open connections of their own (view.go).
	s.viewsMu.Lock()
	s.viewsTo = &viewsConfig{path: path, cfg: cfg}
	s.viewsMu.Unlock()
	if st.Loading {
		// A load under way when the store closed goes on as it ran.
		if err := raw.exec(`PRAGMA synchronous=OFF`); err != nil {
			s.log.Warn("sqlite: resuming a load at the configured synchronous", "err", err)
		}
	}
	s.r, s.get, s.raw, s.cfg, s.path = r, get, raw, cfg, path
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
	if _, err := w.ExecContext(ctx, pragmas); err != nil {
		return sdk.State{}, err
	}
	if err := migrate(ctx, w, version); err != nil {
		return sdk.State{}, err
	}
	var st sdk.State
	if err := w.QueryRowContext(ctx, `SELECT cursor, keys, bytes, loading FROM state WHERE id = 1`).Scan(
		&st.Cursor, &s.keys, &s.bytes, &st.Loading); err != nil {
		return sdk.State{}, err
	}
	s.loading.Store(st.Loading)
	meta, err := readMeta(ctx, w)
	if err != nil {
		return sdk.State{}, err
	}
	st.Meta = meta
	return st, nil
}

// readMeta reads the metadata table.
func readMeta(ctx context.Context, q querier) (map[string][]byte, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, value FROM meta`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	meta := map[string][]byte{}
	for rows.Next() {
		var name string
		var value []byte
		if err := rows.Scan(&name, &value); err != nil {
			return nil, err
		}
		meta[name] = value
	}
	return meta, rows.Err()
}

// migrate creates the layout in a new database, or upgrades an older one,
// in one transaction.
func migrate(ctx context.Context, w *sql.DB, version int) error {
	if version == layoutVersion {
		return nil
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var steps []string
	if version == 0 {
		var tables int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&tables); err != nil {
			return err
		}
		if tables > 0 {
			return errors.New("the database holds tables but no slipstream layout version")
		}
		steps = []string{kvTable, kvIndex, schema}
	} else {
		for v := version; v < layoutVersion; v++ {
			steps = append(steps, upgrades[v])
		}
	}
	steps = append(steps, fmt.Sprintf(`PRAGMA user_version=%d;`, layoutVersion))
	for _, q := range steps {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("layout version %d: %w", version, err)
		}
	}
	return tx.Commit()
}

func (s *Store) opened() error {
	if s.raw == nil {
		return sdk.ErrClosed
	}
	return nil
}

// lockWriter takes wmu for a call that writes, and checks the store is
// still open under it: a Close may have run while the call waited.
func (s *Store) lockWriter() error {
	s.wmu.Lock()
	if err := s.opened(); err != nil {
		s.wmu.Unlock()
		return err
	}
	return nil
}

// Apply implements sdk.Store: the batch, its cursor and its metadata in one
// transaction. Only the last mutation of each key matters, so the batch is
// reduced to one mutation per key and written in key order, which touches
// each B-tree page once instead of once per row.
func (s *Store) Apply(ctx context.Context, b *sdk.Batch) error {
	if err := s.lockWriter(); err != nil {
		return err
	}
	defer s.wmu.Unlock()
	if s.loading.Load() {
		return s.applyLoading(ctx, b)
	}
	muts := lastPerKey(b.Mutations, true)
	var putKeys, putBytes int64
	for _, m := range muts {
		if m.Op == sdk.OpPut {
			putKeys++
			putBytes += int64(len(m.Key) + len(m.Value))
		}
	}
	return s.writeBatch(ctx, b, func(c *rawConn) (keys, nbytes int64, err error) {
		oldKeys, oldBytes, err := c.applyRows(muts)
		return putKeys - oldKeys, putBytes - oldBytes, err
	})
}

// writeBatch commits, in one transaction of the writer, what rows writes
// and the batch's cursor, metadata and counters, which rows changes by the
// amounts it returns. The caller holds wmu.
func (s *Store) writeBatch(ctx context.Context, b *sdk.Batch, rows func(*rawConn) (keys, nbytes int64, err error)) error {
	s.mu.Lock()
	keys, nbytes := s.keys, s.bytes
	s.mu.Unlock()
	err := s.transaction(ctx, func(c *rawConn) error {
		dk, db, err := rows(c)
		if err != nil {
			return err
		}
		keys, nbytes = keys+dk, nbytes+db
		if _, err := c.run(qState, int64(b.Cursor), keys, nbytes); err != nil {
			return err
		}
		for name, value := range b.Meta {
			if _, err := c.run(qMeta, name, nonNil(value)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.keys, s.bytes = keys, nbytes
	s.mu.Unlock()
	return nil
}

// transaction runs write in one transaction of the writer and commits it,
// unless write or ctx fails: then nothing of it is committed. After the
// commit the checkpointer hears of the WAL's size. The caller holds wmu.
func (s *Store) transaction(ctx context.Context, write func(*rawConn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := s.raw
	if c.inTransaction() {
		// A ROLLBACK that failed left the last transaction open.
		if err := c.exec(`ROLLBACK`); err != nil {
			return err
		}
	}
	if err := c.exec(`BEGIN IMMEDIATE`); err != nil {
		return err
	}
	// A statement that runs long (EndLoad's index over a large fold) stops
	// when ctx ends; the COMMIT is never interrupted.
	stop := c.interruptOn(ctx)
	err := write(c)
	stop()
	if cerr := ctx.Err(); cerr != nil {
		if err != nil {
			err = fmt.Errorf("%w (%v)", cerr, err)
		} else {
			err = cerr
		}
	}
	if err == nil {
		err = c.exec(`COMMIT`)
	}
	if err != nil {
		_ = c.exec(`ROLLBACK`)
		return err
	}
	s.ckpt.afterCommit(c, s.loading.Load())
	return nil
}

// Statements every batch runs on the writer.
const (
	qState = `UPDATE state SET cursor = ?, keys = ?, bytes = ? WHERE id = 1`
	qMeta  = `INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`
)

// qCount counts the keys and bytes (keys plus values) of the rows it is
// followed by: a FROM clause.
const qCount = `SELECT count(*), coalesce(sum(length(key) + length(value)), 0) FROM `

// lastPerKey keeps the last mutation of each key, sorted by key when asked
// (an index then takes its pages in order).
func lastPerKey(ms []sdk.Mutation, sorted bool) []*sdk.Mutation {
	last := make(map[string]int, len(ms))
	for i := range ms {
		last[string(ms[i].Key)] = i
	}
	out := make([]*sdk.Mutation, 0, len(last))
	for _, i := range last {
		out = append(out, &ms[i])
	}
	if sorted {
		slices.SortFunc(out, func(a, b *sdk.Mutation) int { return bytes.Compare(a.Key, b.Key) })
	}
	return out
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
	var err error
	loads := s.loads.Load()
	if !s.loading.Load() {
		err = s.get.QueryRowContext(ctx, key).Scan(&e.Value, &rev)
	}
	if s.loading.Load() || s.loads.Load() != loads {
		err = s.snapshot(ctx, func(q querier, loading bool) error {
			if !loading {
				return q.QueryRowContext(ctx, qGet, key).Scan(&e.Value, &rev)
			}
			return q.QueryRowContext(ctx, qGetLoading, key).Scan(&e.Value, &rev)
		})
	}
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
	return s.snapshot(ctx, func(q querier, loading bool) error {
		return scanRange(ctx, q, loading, r, fn)
	})
}

// scanRange is a Scan of r in one read transaction (q), which is in a bulk
// load (loading) or not.
func scanRange(ctx context.Context, q querier, loading bool, r sdk.Range, fn func(sdk.Entry) error) error {
	query, args := scanQuery(loading, r)
	return scanRows(ctx, q, query, args, r.KeysOnly, fn)
}

// scanQuery is the query of a Scan of r and its arguments: its columns are
// key, value and revision, or key and revision when r is keys only.
func scanQuery(loading bool, r sdk.Range) (string, []any) {
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
	cond := ""
	if len(where) > 0 {
		cond = ` WHERE ` + strings.Join(where, " AND ")
	}
	tail := ` ORDER BY key`
	if r.Limit > 0 {
		tail += fmt.Sprintf(` LIMIT %d`, r.Limit)
	}
	from := `kv` + cond
	if loading {
		from = loadingView(cond)
	}
	return `SELECT ` + cols + ` FROM ` + from + tail, args
}

// scanRows runs a Scan's query and calls fn for each row.
func scanRows(ctx context.Context, q querier, query string, args []any, keysOnly bool, fn func(sdk.Entry) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("sqlite: scan: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e sdk.Entry
		var rev int64
		if keysOnly {
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
	loads := s.loads.Load()
	s.mu.Lock()
	st := sdk.Stats{Keys: uint64(s.keys), Bytes: uint64(s.bytes)}
	s.mu.Unlock()
	if s.loading.Load() || s.loads.Load() != loads {
		// The counters hold rows during a load; count the keys.
		var st sdk.Stats
		err := s.snapshot(ctx, func(q querier, loading bool) error {
			from := `kv`
			if loading {
				from = loadingView("")
			}
			return q.QueryRowContext(ctx, qCount+from).Scan(&st.Keys, &st.Bytes)
		})
		if err != nil {
			return sdk.Stats{}, fmt.Errorf("sqlite: stats: %w", err)
		}
		st.DiskBytes = s.diskBytes(ctx)
		return st, nil
	}
	st.DiskBytes = s.diskBytes(ctx)
	return st, nil
}

// diskBytes is the database's size in pages, or 0 when unknown.
func (s *Store) diskBytes(ctx context.Context) uint64 {
	var pages, size int64
	if err := s.r.QueryRowContext(ctx, `SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&pages, &size); err != nil {
		return 0
	}
	return uint64(pages * size)
}

// Compact implements sdk.Compacter: it folds the WAL into the database and
// truncates it, and refreshes the query planner's statistics.
func (s *Store) Compact(ctx context.Context) error {
	if err := s.lockWriter(); err != nil {
		return err
	}
	defer s.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.ckpt.exclusive(func() error {
		if s.loading.Load() {
			// The checkpoint copies the WAL into fold.db at the writer's
			// synchronous, which a load keeps OFF: never copy an unsynced
			// WAL (checkpoint.go), so the configured level for this one.
			if err := s.raw.exec(`PRAGMA synchronous=` + s.cfg.Synchronous); err != nil {
				return err
			}
			defer func() { _ = s.raw.exec(`PRAGMA synchronous=OFF`) }()
		}
		return s.raw.exec(`PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize;`)
	})
}

// Close implements sdk.Store. It closes the views still open first.
func (s *Store) Close(context.Context) error {
	if err := s.lockWriter(); err != nil {
		return err
	}
	defer s.wmu.Unlock()
	err := s.closeViews()
	if s.loading.Load() {
		// The connection that closes last copies the WAL into fold.db at
		// its synchronous: never at a load's OFF.
		err = errors.Join(err, s.raw.exec(`PRAGMA synchronous=`+s.cfg.Synchronous))
	}
	s.get.Close()
	if s.ckpt != nil {
		err = errors.Join(err, s.ckpt.close())
	}
	err = errors.Join(err, s.raw.close(), s.r.Close())
	s.r, s.get, s.raw, s.ckpt = nil, nil, nil, nil
	return err
}
