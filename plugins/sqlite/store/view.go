package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/slipstreamkv/slipstream/sdk"
)

// A view (sdk.Snapshotter) is a read transaction held open on a connection
// of its own, through the C API (raw.go), until the view closes. In WAL
// mode a reader sees the database as of the commit its transaction started
// at, whatever commits after it, and neither waits for the writer nor makes
// it wait: Apply goes on. While a view is open no checkpoint can copy into
// fold.db a commit made after the view's, nor start the WAL over, so the
// WAL grows with every batch until the view closes (see the package doc).
//
// A view's Scan copies many rows per cgo call (rawConn.scan); through
// database/sql, a scan of 1M keys for an export spent a third of its
// plugin's CPU in database/sql and mattn/go-sqlite3 around each row's
// sqlite3_step.

// viewsConfig is what a view opens its connection to.
type viewsConfig struct {
	path string
	cfg  Config
}

// Snapshot implements sdk.Snapshotter. The view's cursor and metadata are
// read in its transaction, by its first statements: BEGIN itself reads
// nothing, and SQLite fixes a transaction's snapshot at its first read, so
// they are those of the rows it scans. A view of a store in a bulk load
// scans what the load holds so far.
func (s *Store) Snapshot(ctx context.Context) (sdk.Snapshot, error) {
	if err := s.opened(); err != nil {
		return nil, err
	}
	s.viewsMu.Lock()
	to := s.viewsTo
	s.viewsMu.Unlock()
	if to == nil {
		return nil, sdk.ErrClosed
	}
	conn, err := openView(to.path, to.cfg)
	if err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	v := &view{s: s, conn: conn}
	if err := v.readState(ctx); err != nil {
		_ = conn.close()
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	s.viewsMu.Lock()
	defer s.viewsMu.Unlock()
	if s.viewsTo == nil { // Close ran meanwhile
		_ = conn.close()
		return nil, sdk.ErrClosed
	}
	if s.views == nil {
		s.views = map[*view]struct{}{}
	}
	s.views[v] = struct{}{}
	return v, nil
}

// openView opens a view's connection, query-only, with its read
// transaction begun.
func openView(path string, cfg Config) (*rawConn, error) {
	c, err := openConn(path, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.exec(`PRAGMA query_only=1; BEGIN`); err != nil {
		_ = c.close()
		return nil, err
	}
	return c, nil
}

// closeViews closes the open views; Close calls it.
func (s *Store) closeViews() error {
	s.viewsMu.Lock()
	views := s.views
	s.views, s.viewsTo = nil, nil
	s.viewsMu.Unlock()
	var errs []error
	for v := range views {
		if _, err := v.release(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// errViewClosed is what a closed view answers: by its Close or the store's.
var errViewClosed = fmt.Errorf("sqlite: the snapshot is closed: %w", sdk.ErrClosed)

// view is an sdk.Snapshot: an open read transaction.
type view struct {
	s       *Store
	state   sdk.State
	loading bool // the view's snapshot is of a bulk load (load.go)

	mu   sync.Mutex // held by Scan and release: no rollback under a Scan
	conn *rawConn   // in the view's transaction; nil once closed
}

// readState reads the cursor, the loading flag and the metadata in the
// view's transaction; the first of these reads fixes its snapshot.
func (v *view) readState(ctx context.Context) error {
	cursor, loading, err := v.conn.run2(`SELECT cursor, loading FROM state WHERE id = 1`)
	if err != nil {
		return err
	}
	v.state.Cursor, v.loading = uint64(cursor), loading != 0
	v.state.Meta = map[string][]byte{}
	return v.conn.scan(ctx, `SELECT name, value, 0 FROM meta`, nil, false, func(e sdk.Entry) error {
		v.state.Meta[string(e.Key)] = bytes.Clone(e.Value)
		return nil
	})
}

func (v *view) State() sdk.State {
	st := v.state
	st.Meta = maps.Clone(st.Meta)
	return st
}

// Scan is Store.Scan in the view's transaction.
func (v *view) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.conn == nil {
		return errViewClosed
	}
	query, args := scanQuery(v.loading, r)
	if err := v.conn.scan(ctx, query, args, r.KeysOnly, fn); err != nil {
		return fmt.Errorf("sqlite: scan: %w", err)
	}
	return nil
}

// Close ends the view's transaction; closing it again does nothing.
func (v *view) Close() error {
	was, err := v.release()
	if was {
		v.s.viewsMu.Lock()
		delete(v.s.views, v)
		v.s.viewsMu.Unlock()
	}
	return err
}

// release ends the view's transaction and closes its connection unless it
// is closed already, and reports whether it was open.
func (v *view) release() (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.conn == nil {
		return false, nil
	}
	err := errors.Join(v.conn.exec(`ROLLBACK`), v.conn.close())
	v.conn = nil
	if err != nil {
		return true, fmt.Errorf("sqlite: close snapshot: %w", err)
	}
	return true, nil
}
