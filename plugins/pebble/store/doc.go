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
//	               absent during a bulk load; while \x00s/counting is
//	               present, the changes since the load ended (modulo 2^64)
//	\x00s/loading  empty; present while a bulk load is under way
//	\x00s/counting empty; present from the end of a bulk load until its
//	               keys are counted
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
// BeginLoad, on a store with cursor 0 and no data key, commits one batch,
// always synced (the ingests below do not go through pebble's log, so
// nothing else would order it before them), that writes \x00s/loading and
// deletes \x00s/stats: from then on the
// counts are unknown, and Apply reads nothing, which removes the per-key
// lookups above. Nor does it commit the batch to pebble's log and
// memtable: it copies the batch into a load buffer in memory (load_buffer
// below, 64 MiB by default; on Linux one mapped region outside the Go heap,
// with transparent huge pages asked for, unmapped when the load ends: its
// first touch cost a fifth of a load on the benchmark machine, whose page
// faults are slow), and when the buffer is full, or before a read
// (Get, Scan, Stats, Snapshot, Compact), BeginLoad, EndLoad or Close, it
// ingests the buffer (DB.Ingest): the mutations, sorted by key (the later
// of two mutations of a key wins), written to one table, and the cursor
// and metadata of the last batch to another, both ingested in one atomic
// step. A crash loses the batches buffered since the last ingest, which
// the package doc's contract allows for a generation that is not
// published yet: what survives is a prefix of the load's batches, with its
// cursor. EndLoad's batch, always synced, makes all of it durable.
//
// Ingesting skips pebble's log, its memtables and their flushes, and the
// compactions that move flushed tables down the levels: a load in key
// order (an artifact's import) never overlaps the tables before it, so
// pebble places every table in the bottom level and no compaction
// rewrites it. A load in the stream's order (a bootstrap) writes tables
// that span the whole key range, which pebble places one level above the
// previous and compacts down later, in the background. The tables are
// written to the directory "ingest" inside the store's before pebble
// links them into its own; Open removes what a crash left there. A
// failed ingest fails the Apply (or read) that needed it and keeps the
// buffered batches, so the next call tries again.
//
// The loading record outlives Close and crashes, and Open reports it as
// [sdk.State.Loading]. EndLoad commits, in one synced batch, the removal
// of \x00s/loading, a stats record of zero and \x00s/counting; Apply
// waits for it. EndLoad on a store that is not loading does nothing;
// BeginLoad on a store that is already loading and still empty does
// nothing.
//
// The loaded keys are counted after EndLoad returns, not in it: the host
// waits for EndLoad to publish the fold, and the count is a pass over all
// of it (lengths only, no value is read), a third of a second for 300k
// keys here. A goroutine counts them from the snapshot EndLoad left while
// batches go on; Apply keeps adding its changes to the stats record, which
// holds only what changed since the load until the count lands. Then, with
// writers held off, it commits the count plus those changes as the stats
// record and removes \x00s/counting. A Close or a crash before that leaves
// \x00s/counting, and Open starts the count again from a snapshot of its
// own (count plus the changes after that snapshot). A BeginLoad on the
// store, still empty, makes a count under way void.
//
// Stats during a load is exact: it counts the data keys by the same full
// pass, from one pebble snapshot, and changes nothing. During the count
// after a load it waits for that count, the same pass, rather than make a
// second (a /status or metrics scrape of a fold that had just been
// rebuilt counted all its keys again on each call); it counts by itself
// only a count that no longer runs (one a failure ended). The host does
// not read a fold before it ends its load, so during a load the cost is
// only paid by a caller that asks.
//
// A plugin older than bulk load (same layout version) refuses to open a
// store in the middle of a load, since the stats record is missing, rather
// than keep wrong counts; a finished load leaves the usual layout. A plugin
// older than the count after a load reads a store opened before its count
// landed as if the changes since the load were all of it: its Stats are
// wrong until the fold is rebuilt (the data and cursor are not affected).
//
// # Compactions at Open
//
// The store gives pebble a compaction scheduler of its own (scheduler.go),
// which grants compactions up to pebble's own limit, as pebble's default
// does, but none until Open has returned. pebble.Open flushes what its log
// replay put in memtables, and before it returns it waits for every
// compaction under way; after a bulk load, that flush starts a long
// compaction of the loaded tables, and a restart spent most of its Open
// (over 400 ms of a 1M-key store) waiting for it. Held back, the
// compactions run while the fold already follows its stream. They are
// held for five seconds at most: a format migration inside Open that
// rewrote tables would wait for them (none is needed from the format
// this store is created at).
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
//	sync           bool, default true: fsync every Apply outside a bulk
//	               load; BeginLoad and EndLoad always sync.
//	               Without it pebble writes its log in the background, so
//	               a crash of the plugin may lose the last commits, newest
//	               first and whole: the cursor still agrees with the data,
//	               and the host re-applies from it.
//	cache_size     bytes of block cache, default 64 MiB
//	memtable_size  bytes per memtable, default pebble's (4 MiB)
//	load_buffer    bytes of a bulk load's batches gathered in memory before
//	               an ingest, default 64 MiB, from 1 MiB to 2 GiB; the
//	               plugin holds 1.4 to 2 times this much more memory
//	               during a load (its entries' index besides the bytes)
//	block_size     bytes of a table's data block before compression,
//	               default 16 KiB (pebble's own default is 4 KiB), from
//	               1 KiB to 1 MiB; larger blocks make loads and compactions
//	               cheaper and a lookup that misses the block cache dearer.
//	               It applies to the tables written from then on.
//
// A level between the two, a commit written to the kernel but not synced
// (SQLite's synchronous=NORMAL), is not offered: pebble cannot skip the
// fsync of its log and still recover it. Its log format records the
// offsets it believes synced, and it refuses to replay a log that ends
// short of one after a crash of the machine.
package store
