package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/slipstreamkv/slipstream/sdk"
)

// A view (sdk.Snapshotter) is a read transaction held open on a connection
// of its own until the view closes. In WAL mode a reader sees the database
// as of the commit its transaction started at, whatever commits after it,
// and neither waits for the writer nor makes it wait: Apply goes on. While
// a view is open no checkpoint can copy into fold.db a commit made after
// the view's, nor start the WAL over, so the WAL grows with every batch
// until the view closes (see the package doc).

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
	vdb := s.vdb
	s.viewsMu.Unlock()
	if vdb == nil {
		return nil, sdk.ErrClosed
	}
	// database/sql rolls a transaction back when its context ends; this
	// one lives until the view's Close, not until the call's end.
	tx, err := vdb.BeginTx(context.WithoutCancel(ctx), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	v := &view{s: s, tx: tx}
	if err := v.readState(ctx); err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("sqlite: snapshot: %w", err)
	}
	s.viewsMu.Lock()
	defer s.viewsMu.Unlock()
	if s.vdb == nil { // Close ran meanwhile
		_ = tx.Rollback()
		return nil, sdk.ErrClosed
	}
	if s.views == nil {
		s.views = map[*view]struct{}{}
	}
	s.views[v] = struct{}{}
	return v, nil
}

// closeViews closes the open views, then their connections; Close calls it.
func (s *Store) closeViews() error {
	s.viewsMu.Lock()
	views, vdb := s.views, s.vdb
	s.views, s.vdb = nil, nil
	s.viewsMu.Unlock()
	var errs []error
	for v := range views {
		if _, err := v.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if vdb != nil {
		errs = append(errs, vdb.Close())
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

	mu sync.Mutex // held by Scan and release: no rollback under a Scan
	tx *sql.Tx    // nil once closed
}

// readState reads the cursor, the loading flag and the metadata in the
// view's transaction; the first of these reads fixes its snapshot.
func (v *view) readState(ctx context.Context) error {
	if err := v.tx.QueryRowContext(ctx, `SELECT cursor, loading FROM state WHERE id = 1`).Scan(&v.state.Cursor, &v.loading); err != nil {
		return err
	}
	meta, err := readMeta(ctx, v.tx)
	v.state.Meta = meta
	return err
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
	if v.tx == nil {
		return errViewClosed
	}
	return scanRange(ctx, v.tx, v.loading, r, fn)
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

// release rolls the view's transaction back unless it ended already, and
// reports whether it was open.
func (v *view) release() (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tx == nil {
		return false, nil
	}
	err := v.tx.Rollback()
	v.tx = nil
	if err != nil && !errors.Is(err, sql.ErrTxDone) {
		return true, fmt.Errorf("sqlite: close snapshot: %w", err)
	}
	return true, nil
}
