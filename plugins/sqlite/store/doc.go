// Package store is the SQLite fold backend behind slipstream-store-sqlite.
//
// # Table layout (a stable, read-only interface)
//
// A fold is one database file, fold.db, in the directory the host gives the
// plugin. Other programs may open it read-only (WAL mode allows readers
// beside the writer) and rely on these tables:
//
//	CREATE TABLE kv (
//	    id       INTEGER PRIMARY KEY, -- storage order only; not stable, do not use
//	    key      BLOB NOT NULL,       -- the fold key, raw bytes (UTF-8 for NATS keys)
//	    value    BLOB NOT NULL,       -- the value, raw bytes; may be empty
//	    revision INTEGER NOT NULL     -- the stream sequence that wrote it
//	);
//	CREATE UNIQUE INDEX kv_key ON kv (key);
//
// Rows are appended in rowid order and found by the unique index on key:
// a bulk load of keys in random order then dirties index pages (small
// entries) instead of row pages, which made inserts faster than a WITHOUT
// ROWID table keyed by key (BenchmarkApply; the figure is in BENCHMARKS.md).
// A database of layout version 1 declares key UNIQUE in the table instead
// of kv_key; it reads the same.
//
//	CREATE TABLE meta (
//	    name  TEXT PRIMARY KEY,     -- host metadata, e.g. slipstream.stream
//	    value BLOB NOT NULL
//	) WITHOUT ROWID;
//
//	CREATE TABLE state (
//	    id     INTEGER PRIMARY KEY CHECK (id = 1),
//	    cursor INTEGER NOT NULL,    -- last stream sequence whose effect is in kv
//	    keys   INTEGER NOT NULL,    -- number of rows in kv
//	    bytes  INTEGER NOT NULL,    -- sum of length(key)+length(value) over kv
//	    loading INTEGER NOT NULL    -- 1 during a bulk load (below), else 0
//	);
//
// While loading = 1 the fold is being filled in bulk-load mode
// (sdk.Loader): kv has no kv_key index and may hold several rows of a key
// (the newest, highest id, counts), deletes wait in a table load_deletes
// (key, before: rows of key with id <= before are deleted), and keys and
// bytes count rows. EndLoad settles all of it in one transaction. The host
// publishes a generation only after its load has ended, so a reader of the
// published fold never sees one; a reader of other files checks loading.
//
// # Bulk loads and durability
//
// A load's batches are committed like any other, each with its cursor,
// but at synchronous=OFF and without checkpoints until the WAL reaches the
// writer's limit (below): the load's pages are written once, so copying
// them into fold.db early saves nothing, and it competed with the load for
// the CPU and the disk. A process that dies mid-load leaves every
// committed batch; a machine that loses power mid-load may come back with
// an earlier batch's cursor and data, never a mix, since the WAL recovers
// to a prefix of its commits and fold.db is written only by checkpoints,
// which sync the WAL first. EndLoad's commit runs at synchronous=FULL
// (unless the fold is configured "off"): when EndLoad returns, the whole
// load is on disk. It syncs the WAL once in the background as it starts,
// while the index builds, so the commit waits only for the index's pages.
// After EndLoad the fold is back at its configured synchronous and the
// checkpoints copy the load into fold.db.
//
// Keys sort in byte order (BLOB comparison is memcmp). Every batch and its
// cursor are committed in one transaction, so a reader sees a fold that
// matches its cursor. The layout is versioned by PRAGMA user_version (2);
// a change to it bumps the version and is announced in the release notes;
// the plugin upgrades an older file in place when it opens it.
//
// # Configuration (the fold's store_config table)
//
//	synchronous        "normal" (default) | "full" | "off"
//	wal_autocheckpoint pages of WAL that start a checkpoint, default 16384;
//	                   0: never checkpoint while open
//	cache_size         page cache in bytes, default 64 MiB
//	busy_timeout       milliseconds a reader waits on a lock, default 5000
//
// # Writes and checkpoints
//
// Every write after Open (batches, bulk loads, Compact) goes through one
// connection used with the SQLite C API (raw.go), one cgo call per batch:
// per key, one lookup of its row (for the exact counters), then an insert,
// an update or a delete of that row, all single-row prepared statements
// stepped in C. A bulk load's batch of puts only is appended as it comes,
// with no lookup and no reduction to a mutation per key. In a large fold a random key dirties a page (4 KiB of WAL)
// of its own, while keys in order share pages: BenchmarkApply reports
// pages/entry, and BENCHMARKS.md has the figures.
//
// Checkpoints run on a connection of their own (checkpoint.go): a commit
// that leaves wal_autocheckpoint pages or more in the WAL wakes it, and its
// PASSIVE checkpoints copy the WAL into fold.db while the writer goes on.
// SQLite's own automatic checkpoint would run inside that commit instead,
// syncing fold.db before returning. As the writer keeps adding to the WAL,
// these checkpoints seldom copy all of it, and SQLite starts the WAL over
// only after one that did; so once the WAL holds four times
// wal_autocheckpoint pages, the writer copies the rest itself after its
// commit. Under sustained writes the WAL file thus grows to about four times
// wal_autocheckpoint pages (256 MiB at the default) and is rewritten in
// place; lower wal_autocheckpoint to trade speed for disk. During a bulk
// load only that limit starts a checkpoint (see above), so the WAL grows to
// it before the first. Together these
// made Apply of keys in random order much faster at 1M keys
// (BenchmarkApply; the before and after figures are in BENCHMARKS.md).
//
// # Views
//
// A view (sdk.Snapshotter, view.go) is a read transaction, BEGIN on a
// query-only connection of its own, held until the view closes. It reads
// the cursor and metadata first, and that first read fixes the
// transaction's snapshot, so its rows are exactly those committed with
// that cursor. In WAL mode the writer neither waits for it nor makes it
// wait: Apply goes on, and the view goes on seeing its batch.
//
// A view pins the WAL. Checkpoints stop at the first commit the oldest open
// view does not see, and the WAL starts over only once no reader needs it,
// so while a view stays open under writes the WAL file grows by every batch
// (past the bound described above) and reads of the live fold slow as it
// does; it is copied and shrinks back after the view closes. Compact, whose
// TRUNCATE checkpoint waits for readers, waits up to busy_timeout for the
// views to close, and Apply waits for Compact meanwhile. Close views
// promptly; the store's Close closes those still open.
package store
