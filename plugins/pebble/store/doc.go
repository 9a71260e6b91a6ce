// Package store is the slipstream fold store on pebble
// (github.com/cockroachdb/pebble/v2), served as a plugin by
// plugins/pebble. It implements [sdk.Store], [sdk.Compacter],
// [sdk.Describer] and [sdk.LoggerSetter].
//
// # Key layout
//
// One pebble database holds the fold's data and the store's own records,
// separated by the first byte of the key, so no user key can collide with a
// record and a scan of the data never sees one:
//
//	\x00s/format   layout version, "1"; written when the directory is created
//	\x00s/cursor   8-byte big-endian cursor of the last committed batch
//	\x00s/stats    16 bytes: big-endian live key count, then key+value bytes
//	\x00m/<name>   host metadata <name> (opaque bytes)
//	\x01d/<key>    fold entry <key>: 8-byte big-endian revision, then the value
//
// Every Apply writes its mutations, the cursor, the metadata and the updated
// stats in one pebble batch, committed with pebble.Sync unless the store
// config says otherwise, so a crash leaves either all of a batch or none of
// it. Readers use the database directly: pebble applies a batch atomically,
// so Get and Scan see all of a concurrent Apply or none of it.
//
// The key count and byte total are maintained incrementally: Apply looks up
// each distinct key of the batch (did it exist, how large was its value) with
// one iterator seeking through the sorted keys, helped by bloom filters on
// every level, so a new key usually costs no data block read. That is most
// of Apply's own CPU time; the alternative, a full scan per Stats call, would
// cost seconds on a large fold.
//
// # Config
//
// The fold's store_config table, as JSON; unknown keys are an error:
//
//	sync           bool, default true: fsync every batch commit
//	cache_size     bytes of block cache, default 64 MiB
//	memtable_size  bytes per memtable, default pebble's (4 MiB)
package store
