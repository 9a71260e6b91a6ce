package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

// layoutV1 is the layout version 1 wrote: key UNIQUE in the table, no
// loading column.
const layoutV1 = `
CREATE TABLE kv (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, value BLOB NOT NULL, revision INTEGER NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), cursor INTEGER NOT NULL, keys INTEGER NOT NULL, bytes INTEGER NOT NULL);
PRAGMA user_version = 1;
`

func writeDB(t *testing.T, dir, script string) {
	t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(dir, "fold.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(script); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFromLayout1: a fold written by layout version 1 opens with
// its cursor, data and counts, keeps folding, and reports no load.
func TestUpgradeFromLayout1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeDB(t, dir, layoutV1+`
INSERT INTO kv (key, value, revision) VALUES (x'61', x'31', 3), (x'62', x'', 4);
INSERT INTO meta VALUES ('slipstream.bucket', x'63');
INSERT INTO state VALUES (1, 4, 2, 3);`)
	s := store.New()
	st, err := s.Open(ctx, dir, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if st.Cursor != 4 || st.Loading || string(st.Meta["slipstream.bucket"]) != "c" {
		t.Fatalf("Open = %+v", st)
	}
	if e, err := s.Get(ctx, []byte("a")); err != nil || string(e.Value) != "1" || e.Revision != 3 {
		t.Fatalf("Get(a) = %+v, %v", e, err)
	}
	if err := s.Apply(ctx, &sdk.Batch{Cursor: 5, Mutations: []sdk.Mutation{
		{Op: sdk.OpPut, Key: []byte("a"), Value: []byte("22"), Revision: 5},
		{Op: sdk.OpDelete, Key: []byte("b")},
	}}); err != nil {
		t.Fatal(err)
	}
	if stats, err := s.Stats(ctx); err != nil || stats.Keys != 1 || stats.Bytes != 3 {
		t.Fatalf("Stats = %+v, %v; want 1 key, 3 bytes", stats, err)
	}
	if err := s.BeginLoad(ctx); err == nil {
		t.Fatal("BeginLoad on an upgraded store that holds keys succeeded")
	}
}

// TestEmptyLayout1Loads: an empty layout-1 fold (its key index is a column
// constraint) can still be bulk loaded.
func TestEmptyLayout1Loads(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeDB(t, dir, layoutV1+`INSERT INTO state VALUES (1, 0, 0, 0);`)
	s := store.New()
	if _, err := s.Open(ctx, dir, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Apply(ctx, &sdk.Batch{Cursor: uint64(i + 1), Mutations: []sdk.Mutation{
			{Op: sdk.OpPut, Key: []byte("k"), Value: []byte{byte('0' + i)}, Revision: uint64(i + 1)},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EndLoad(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Get(ctx, []byte("k")); err != nil || string(e.Value) != "1" {
		t.Fatalf("Get(k) = %+v, %v; want the second put", e, err)
	}
}

// TestForeignDatabaseRefused: a SQLite file with tables but no layout
// version is somebody else's; the store does not write into it.
func TestForeignDatabaseRefused(t *testing.T) {
	dir := t.TempDir()
	writeDB(t, dir, `CREATE TABLE orders (id INTEGER PRIMARY KEY);`)
	_, err := store.New().Open(context.Background(), dir, []byte("{}"))
	if err == nil || !strings.Contains(err.Error(), "no slipstream layout version") {
		t.Fatalf("Open of a foreign database: %v", err)
	}
}
