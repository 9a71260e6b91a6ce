// Package store is the slipstream fold store on pebble
// (github.com/cockroachdb/pebble/v2), served as a plugin by
// plugins/pebble. It implements [sdk.Store], [sdk.Compacter], [sdk.Loader],
// [sdk.Snapshotter], [sdk.Describer] and [sdk.LoggerSetter].
//
// # Key layout
//
// One pebble database holds the fold's data and the store's own records,
// separated by the first byte of the key, so no user key can collide with a
// record and a scan of the data never sees one:
//
//	\x00s/format   layout version, "1"; written when the directory is created
//	\x00s/cursor   8-byte big-endian cursor of the last committed batch
//	\x00s/stats    16 bytes: big-endian live key count, then key+value bytes;
//	               absent during a bulk load
//	\x00s/loading  empty; present while a bulk load is under way
//	\x00m/<name>   host metadata <name> (opaque bytes)
//	\x01d/<key>    fold entry <key>: 8-byte big-endian revision, then the value
//
// Every Apply writes its mutations, the cursor, the metadata and (outside a
// bulk load) the updated stats in one pebble batch, committed with
// pebble.Sync unless the store config says otherwise, so a crash leaves
// either all of a batch or none of it. Readers use the database directly: pebble applies a batch atomically,
// so Get and Scan see all of a concurrent Apply or none of it.
//
// The key count and byte total are maintained incrementally: Apply looks up
// each distinct key of the batch (did it exist, how large was its value) with
// one iterator seeking through the sorted keys, helped by bloom filters on
// every level, so a new key usually costs no data block read. That is most
// of Apply's own CPU time; the alternative, a full scan per Stats call, would
// cost seconds on a large fold.
//
// # Bulk load
//
// BeginLoad, on a store with cursor 0 and no data key, commits one batch
// that writes \x00s/loading and deletes \x00s/stats: from then on the
// counts are unknown, and Apply writes each batch (mutations, cursor,
// metadata) without reading anything, which removes the per-key lookups
// above. The batches stay atomic but are committed without a sync, whatever
// the config says: the generation is not published yet, so a crash may
// lose the latest batches of the load (pebble's log is written in order,
// so what survives is a prefix of them, with its cursor), and EndLoad's
// batch, always synced, makes all of them durable at once. A key may be
// put and deleted any number of times, pebble keeps the last write. The loading
// record outlives Close and crashes, and Open reports it as
// [sdk.State.Loading]. EndLoad counts the data keys and their bytes in one
// ordered pass (lengths only, no value is read), then commits the stats
// record and the removal of \x00s/loading in one batch, synced; Apply waits
// for it. EndLoad on a store that is not loading does
// nothing; BeginLoad on a store that is already loading and still empty
// does nothing.
//
// Stats during a load is exact: it counts the data keys by the same full
// pass as EndLoad, from one pebble snapshot, and leaves the load running (a
// read never changes the store). The host does not read a fold before it
// ends its load, so the cost is only paid by a caller that asks.
//
// A plugin older than bulk load (same layout version) refuses to open a
// store in the middle of a load, since the stats record is missing, rather
// than keep wrong counts; a finished load leaves the usual layout.
//
// # Views
//
// Snapshot opens a pebble snapshot (DB.NewSnapshot) and reads the cursor,
// the metadata and the loading record from it, so the view's State is that
// of the data it scans, and a view's Scan is Scan's own code over the
// snapshot instead of the database. A snapshot is a sequence number: it
// costs nothing to open and does not hold Apply back, but while it is open
// compactions keep every version of a key it can see, so a view left open
// under heavy overwrites keeps the older values on disk until it closes.
// Close closes the views still open before it closes the database.
//
// # Config
//
// The fold's store_config table, as JSON; unknown keys are an error:
//
//	sync           bool, default true: fsync every batch commit (Apply,
//	               BeginLoad) outside a bulk load; EndLoad always syncs
//	cache_size     bytes of block cache, default 64 MiB
//	memtable_size  bytes per memtable, default pebble's (4 MiB)
package store
