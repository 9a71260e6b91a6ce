package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/slipstreamkv/slipstream/sdk"
)

// A bulk load (sdk.Loader) fills an empty fold without the unique index on
// key: puts are appended to kv as plain rows, deletes are noted in
// load_deletes with the highest row id they cover, and EndLoad builds the
// index once, sorting every key in one pass instead of dirtying an index
// page per row. A key put several times during the load has several rows
// until EndLoad keeps the newest.
//
// Everything the load writes is committed with the batch's cursor, and
// state.loading says a load is under way, so a crash resumes it: the host
// re-applies from the cursor and ends the load when it catches up.

const loadDeletesTable = `
CREATE TABLE load_deletes (
    key    BLOB NOT NULL,
    before INTEGER NOT NULL -- rows of key with id <= before are deleted
);`

// BeginLoad implements sdk.Loader. Like every write after Open, it runs on
// the writer's C API connection: a schema change made on another
// connection would leave that one's copy of the schema stale, and SQLite
// checks CREATE INDEX against the copy (EndLoad's would fail).
func (s *Store) BeginLoad(ctx context.Context) error {
	if err := s.lockWriter(); err != nil {
		return err
	}
	defer s.wmu.Unlock()
	flagged := false // loading was set here, for a transaction that may yet fail
	err := s.transaction(ctx, func(c *rawConn) error {
		cursor, rows, err := c.run2(`SELECT cursor, EXISTS (SELECT 1 FROM kv) FROM state WHERE id = 1`)
		if err != nil {
			return err
		}
		if cursor != 0 || rows != 0 {
			return fmt.Errorf("a bulk load needs an empty store (cursor %d, holds keys: %v)", cursor, rows != 0)
		}
		if s.loading.Load() {
			return nil
		}
		// Readers take the path that reads the loading flag in their own
		// snapshot from now on: one that looked at the flag before this
		// commit could otherwise read the loading table as if it were not.
		s.loads.Add(1)
		s.loading.Store(true)
		flagged = true
		// The table is recreated rather than its index dropped: a layout
		// version 1 table carries the index as a column constraint.
		for _, q := range []string{`DROP TABLE kv`, kvTable, loadDeletesTable, `UPDATE state SET loading = 1 WHERE id = 1`} {
			if err := c.exec(q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if flagged {
			s.loading.Store(false)
		}
		return fmt.Errorf("sqlite: begin load: %w", err)
	}
	// The load's batches need not be durable before EndLoad: see doc.go.
	if err := s.raw.exec(`PRAGMA synchronous=OFF`); err != nil {
		return fmt.Errorf("sqlite: begin load: %w", err)
	}
	return nil
}

// applyLoading is Apply during a bulk load: puts are appended without
// looking for the key, deletes are noted for EndLoad. The counters hold
// rows, not keys, until EndLoad counts again. A batch of puts only is
// appended as it comes, a key put twice in it included (EndLoad keeps the
// newest row); one with deletes is first reduced to the last mutation of
// each key, so that its puts and deletes are of different keys.
func (s *Store) applyLoading(ctx context.Context, b *sdk.Batch) error {
	var puts, deletes []*sdk.Mutation
	var putBytes int64
	muts := b.Mutations
	reduced := false
	for i := range muts {
		if muts[i].Op != sdk.OpPut {
			reduced = true
			break
		}
	}
	var ms []*sdk.Mutation
	if reduced {
		ms = lastPerKey(muts, false)
	} else {
		ms = make([]*sdk.Mutation, len(muts))
		for i := range muts {
			ms[i] = &muts[i]
		}
	}
	for _, m := range ms {
		if m.Op == sdk.OpPut {
			puts = append(puts, m)
			putBytes += int64(len(m.Key) + len(m.Value))
		} else {
			deletes = append(deletes, m)
		}
	}
	return s.writeBatch(ctx, b, func(c *rawConn) (keys, nbytes int64, err error) {
		if len(deletes) > 0 {
			// Every row of these keys so far has an id <= the current
			// maximum; this batch's puts are of other keys.
			before, err := c.run(`SELECT coalesce(max(id), 0) FROM kv`)
			if err != nil {
				return 0, 0, err
			}
			for _, m := range deletes {
				if _, err := c.run(`INSERT INTO load_deletes (key, before) VALUES (?, ?)`, m.Key, before); err != nil {
					return 0, 0, err
				}
			}
		}
		return int64(len(puts)), putBytes, c.insertRows(puts)
	})
}

// querier is what reads need of a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// snapshot runs a read in one read transaction and tells it whether a
// bulk load is under way in that snapshot: the flag in memory may be out of
// date by a BeginLoad or EndLoad committed meanwhile.
func (s *Store) snapshot(ctx context.Context, read func(q querier, loading bool) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var loading bool
	if err := tx.QueryRowContext(ctx, `SELECT loading FROM state WHERE id = 1`).Scan(&loading); err != nil {
		return err
	}
	return read(tx, loading)
}

// qGet reads one key through the unique index.
const qGet = `SELECT value, revision FROM kv WHERE key = ?`

// qGetLoading reads one key during a load: its newest row, unless a delete
// noted later covers it. Without the index it scans the table.
const qGetLoading = `SELECT value, revision FROM kv WHERE key = ?1
	AND id > coalesce((SELECT max(before) FROM load_deletes WHERE key = ?1), 0)
	ORDER BY id DESC LIMIT 1`

// loadingView is a FROM clause holding what kv will hold after EndLoad,
// restricted by cond (a WHERE clause on key, or ""): the newest row of
// each key unless a delete noted later covers it.
func loadingView(cond string) string {
	return `(SELECT kv.key AS key, value, revision FROM
		(SELECT id, key, value, revision, max(id) OVER (PARTITION BY key) AS newest FROM kv` + cond + `) AS kv
		LEFT JOIN (SELECT key, max(before) AS before FROM load_deletes GROUP BY key) AS d ON d.key = kv.key
		WHERE kv.id = kv.newest AND kv.id > coalesce(d.before, 0))`
}

// EndLoad implements sdk.Loader: it keeps the newest row of each key,
// applies the deletes and builds the unique index, in one transaction of
// the writer. Its commit leaves the index in the WAL for the checkpointer
// to copy (checkpoint.go), unless the WAL has grown past the writer's
// limit, as after any commit: SQLite's own checkpoint would always copy it
// inside the commit, and EndLoad would wait for the copy (BENCHMARKS.md has
// EndLoad's times with and without it). A context
// that ends stops the sort where it is, and the store is still loading.
func (s *Store) EndLoad(ctx context.Context) error {
	if err := s.lockWriter(); err != nil {
		return err
	}
	defer s.wmu.Unlock()
	if !s.loading.Load() {
		return nil
	}
	// The counters hold the rows appended. They are the fold's counts
	// unless a key came twice or was deleted: then count again.
	s.mu.Lock()
	keys, nbytes := s.keys, s.bytes
	s.mu.Unlock()
	// The load's batches were committed at synchronous=OFF. EndLoad's
	// commit syncs the WAL, and with it everything the load wrote, unless
	// the fold is configured never to sync. The load's part of the WAL is
	// written to disk meanwhile, while the index builds: the commit's sync
	// then has only the index to wait for.
	if s.cfg.Synchronous != "off" {
		if err := s.raw.exec(`PRAGMA synchronous=FULL`); err != nil {
			return fmt.Errorf("sqlite: end load: %w", err)
		}
		synced := make(chan struct{})
		defer func() { <-synced }()
		go func() {
			defer close(synced)
			if f, err := os.Open(s.path + "-wal"); err == nil {
				_ = f.Sync() // only early: the commit syncs the WAL again
				f.Close()
			}
		}()
	}
	err := s.transaction(ctx, func(c *rawConn) error {
		recount := false
		// Most loads put each key once: the unique index then builds in one
		// sort. A duplicate fails it, and the older rows go first.
		switch err := c.exec(kvIndex); {
		case err == nil:
		case isConstraint(err):
			if err := dedupe(c); err != nil {
				return err
			}
			if err := c.exec(kvIndex); err != nil {
				return err
			}
			recount = true
		default:
			return fmt.Errorf("index: %w", err)
		}
		deletes, err := c.run(`SELECT EXISTS (SELECT 1 FROM load_deletes)`)
		if err != nil {
			return err
		}
		if deletes != 0 {
			if err := c.exec(`DELETE FROM kv WHERE id IN (
				SELECT kv.id FROM load_deletes AS d JOIN kv ON kv.key = d.key AND kv.id <= d.before)`); err != nil {
				return err
			}
			recount = true
		}
		if recount {
			if keys, nbytes, err = c.run2(qCount + `kv`); err != nil {
				return fmt.Errorf("count: %w", err)
			}
		}
		if err := c.exec(`DROP TABLE load_deletes`); err != nil {
			return err
		}
		_, err = c.run(`UPDATE state SET loading = 0, keys = ?, bytes = ? WHERE id = 1`, keys, nbytes)
		return err
	})
	sync := s.cfg.Synchronous
	if err != nil {
		sync = "off" // still loading
	}
	if serr := s.raw.exec(`PRAGMA synchronous=` + sync); serr != nil && err == nil {
		s.log.Warn("sqlite: restoring synchronous after a load", "err", serr)
	}
	if err != nil {
		return fmt.Errorf("sqlite: end load: %w", err)
	}
	s.mu.Lock()
	s.keys, s.bytes = keys, nbytes
	s.mu.Unlock()
	s.loading.Store(false)
	// The load's pages are all in the WAL: the checkpoints start now.
	s.ckpt.afterCommit(s.raw, false)
	return nil
}

// dedupe deletes every row of a key but its newest (highest id), in one
// pass over a temporary index in key order.
func dedupe(c *rawConn) error {
	for _, q := range []string{
		`CREATE INDEX kv_load ON kv (key, id)`,
		`DELETE FROM kv WHERE id IN (
			SELECT id FROM (SELECT id, key, lead(key) OVER (ORDER BY key, id) AS next FROM kv)
			WHERE key = next)`,
		`DROP INDEX kv_load`,
	} {
		if err := c.exec(q); err != nil {
			return fmt.Errorf("dedupe: %w", err)
		}
	}
	return nil
}

// sqliteConstraint is SQLite's result code for a constraint violation.
const sqliteConstraint = 19

// isConstraint reports a constraint violation (a duplicate key).
func isConstraint(err error) bool {
	var re *rawError
	return errors.As(err, &re) && re.code&0xff == sqliteConstraint
}
