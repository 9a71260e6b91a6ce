package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Store is a fold kept in one pebble database. Create it with New; it
// becomes usable after Open and may be opened again after Close.
type Store struct {
	logger *slog.Logger

	mu    sync.RWMutex // write-held by Open and Close, read-held by every other call
	db    *pebble.DB
	wo    *pebble.WriteOptions
	dir   string
	opts  *pebble.Options // the tables of a load's ingest are written with them
	sched *scheduler

	// loadBuffer is how many bytes of a load's batches pending may hold
	// before Apply ingests them.
	loadBuffer int

	// applyMu serializes Apply, BeginLoad and EndLoad: each batch reads the
	// stats the previous one wrote. sdk.Serve serializes too; in-process
	// callers might not.
	applyMu sync.Mutex
	// loading mirrors loadingKey: a bulk load is under way, Apply keeps no
	// counts. Written by Open (mu write-held) and by BeginLoad and EndLoad
	// (applyMu held); read by Apply (applyMu held).
	loading bool
	// pending holds the batches of a load since its last ingest (applyMu
	// held); hasPending says it holds any, for readers that do not take
	// applyMu unless they must (settle). ingests numbers the ingests'
	// table files.
	pending    pending
	hasPending atomic.Bool
	ingests    uint64

	viewsMu sync.Mutex
	views   map[*view]struct{} // the open views (Snapshot); Close closes them

	// The counts of finished loads' keys (countAfterLoad): countCtx ends
	// them (Close), countWG waits for them, and only the one numbered
	// countGen may commit (applyMu held): a later BeginLoad or EndLoad
	// makes an older count void.
	countCtx  context.Context
	countStop context.CancelFunc
	countWG   sync.WaitGroup
	countGen  uint64
	// countMu orders starting a count against stopping them all, and
	// guards countCtx and countStop once Open has set them, and countDone.
	countMu sync.Mutex
	// countDone is closed when the last count started has ended, so that
	// Stats waits for it instead of counting the same keys itself.
	countDone chan struct{}
	// countPause, set by tests, holds each count between its pass and its
	// commit until it is closed.
	countPause chan struct{}
}

// New returns a closed store that logs nowhere until SetLogger.
func New() *Store {
	return &Store{logger: slog.New(slog.DiscardHandler)}
}

var (
	_ sdk.Store        = (*Store)(nil)
	_ sdk.Compacter    = (*Store)(nil)
	_ sdk.Loader       = (*Store)(nil)
	_ sdk.Snapshotter  = (*Store)(nil)
	_ sdk.Describer    = (*Store)(nil)
	_ sdk.LoggerSetter = (*Store)(nil)
)

// SetLogger sets the logger pebble's own messages go to. Call it before Open.
func (s *Store) SetLogger(l *slog.Logger) {
	s.logger = l.With("store", "pebble")
}

// Describe names the store; its version is the on-disk layout version.
func (s *Store) Describe() sdk.Info {
	return sdk.Info{Name: "pebble", Version: layoutVersion}
}

// Open opens or creates the database in dir. A directory holding a pebble
// database that is not a slipstream fold, or one pebble cannot read, is an
// error; Open never starts over on its own.
func (s *Store) Open(_ context.Context, dir string, config []byte) (sdk.State, error) {
	cfg, err := ParseConfig(config)
	if err != nil {
		return sdk.State{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return sdk.State{}, errors.New("pebble: store is already open")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sdk.State{}, fmt.Errorf("pebble: %w", err)
	}
	cache := pebble.NewCache(cfg.CacheSize)
	defer cache.Unref() // the database holds its own reference
	opts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       cfg.MemtableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s.logger},
		EventListener:      eventListener(s.logger),
		// Writes do not stop for a deep L0: a bulk load (or a burst of
		// live writes) fills it faster than two cores compact it, and
		// stopping made a 1M-key load much slower (BenchmarkApply; the
		// figures are in BENCHMARKS.md); reads pay for the extra files
		// until compactions catch up.
		L0StopWritesThreshold: 1000,
		// Four memtables, not two, absorb a burst while one is flushed:
		// with two, a bootstrap stalled on flushes many times a second.
		MemTableStopWritesThreshold: 4,
		// A second compaction when L0 or the compaction debt calls for
		// it: a bootstrap's compactions otherwise fall behind.
		CompactionConcurrencyRange: func() (int, int) { return 1, 2 },
	}
	sched := newScheduler()
	opts.Experimental.CompactionScheduler = sched
	// Bloom filters (inherited by every level) let Apply learn cheaply that
	// a key is new, which is most keys during a bootstrap.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// Pebble's default data block is 4 KiB. At 16 KiB a 1M-key bulk load
	// took 13% less CPU, and the compactions after it a fifth less, for
	// point lookups that missed the cache 5-10% slower (BENCHMARKS.md).
	opts.Levels[0].BlockSize = cfg.BlockSize
	opts.EnsureDefaults() // the other levels inherit level 0's options
	db, err := pebble.Open(dir, opts)
	if err != nil {
		sched.abandon()
		return sdk.State{}, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	sched.startWithin(catchUpGrace) // or at the first commit (Apply)
	// Under pebble's lock file: another process that has the store open
	// keeps its ingest's tables.
	if err := removeIngestDir(dir); err != nil {
		_ = db.Close()
		return sdk.State{}, err
	}
	st, err := load(db)
	if err != nil {
		_ = db.Close()
		return sdk.State{}, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	s.db, s.wo, s.loading = db, pebble.NoSync, st.Loading
	s.dir, s.opts, s.loadBuffer, s.sched = dir, opts, cfg.LoadBuffer, sched
	if cfg.Sync {
		s.wo = pebble.Sync
	}
	s.countMu.Lock()
	s.countCtx, s.countStop = context.WithCancel(context.Background())
	s.countMu.Unlock()
	if err := s.resumeCount(db); err != nil {
		s.countStop()
		_ = db.Close()
		s.db = nil
		return sdk.State{}, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	return st, nil
}

// resumeCount starts again the count of a load that a Close or a crash
// interrupted (countAfterLoad). No Apply runs yet: Open holds mu.
func (s *Store) resumeCount(db *pebble.DB) error {
	snap := db.NewSnapshot()
	counting, err := has(snap, countingKey)
	if err != nil || !counting {
		_ = snap.Close()
		return err
	}
	rec, err := get(snap, statsKey)
	if err != nil {
		_ = snap.Close()
		return fmt.Errorf("stats record: %w", err)
	}
	base, err := decodeCounts(rec)
	if err != nil {
		_ = snap.Close()
		return err
	}
	s.startCount(db, snap, base)
	return nil
}

// load reads the committed state, initializing a new database.
func load(db *pebble.DB) (sdk.State, error) {
	format, err := get(db, formatKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return initialize(db)
	}
	if err != nil {
		return sdk.State{}, err
	}
	if string(format) != layoutVersion {
		return sdk.State{}, fmt.Errorf("layout version %q, this plugin reads version %s", format, layoutVersion)
	}
	st, err := readState(db)
	if err != nil {
		return sdk.State{}, err
	}
	if !st.Loading { // a load keeps no stats record
		rec, err := get(db, statsKey)
		if err != nil {
			return sdk.State{}, fmt.Errorf("stats record: %w", err)
		}
		if _, err := decodeCounts(rec); err != nil {
			return sdk.State{}, err
		}
	}
	return st, nil
}

// readState reads the cursor, the metadata and the loading record of r:
// the database, or a snapshot of it.
func readState(r pebble.Reader) (sdk.State, error) {
	cursor, err := readCursor(r)
	if err != nil {
		return sdk.State{}, err
	}
	loading, err := isLoading(r)
	if err != nil {
		return sdk.State{}, err
	}
	meta := map[string][]byte{}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: metaPrefix, UpperBound: metaEnd})
	if err != nil {
		return sdk.State{}, err
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			break // it.Close reports it
		}
		meta[string(it.Key()[len(metaPrefix):])] = bytes.Clone(v)
	}
	if err := it.Close(); err != nil {
		return sdk.State{}, fmt.Errorf("metadata: %w", err)
	}
	return sdk.State{Cursor: cursor, Meta: meta, Loading: loading}, nil
}

// isLoading reports whether r holds the loading record.
func isLoading(r pebble.Reader) (bool, error) {
	return has(r, loadingKey)
}

// has reports whether r holds the store record key.
func has(r pebble.Reader, key []byte) (bool, error) {
	_, err := get(r, key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record %q: %w", key, err)
	}
	return true, nil
}

// initialize writes the store's records into a new database, refusing one
// that already holds keys it did not write.
func initialize(db *pebble.DB) (sdk.State, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return sdk.State{}, err
	}
	foreign := it.First()
	if err := it.Close(); err != nil {
		return sdk.State{}, err
	}
	if foreign {
		return sdk.State{}, errors.New("the directory holds a pebble database that is not a slipstream fold (no format record)")
	}
	b := db.NewBatch()
	defer b.Close()
	_ = b.Set(formatKey, []byte(layoutVersion), nil)
	_ = b.Set(cursorKey, encodeUint64(0), nil)
	_ = b.Set(statsKey, counts{}.encode(), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return sdk.State{}, fmt.Errorf("initialize: %w", err)
	}
	return sdk.State{Meta: map[string][]byte{}}, nil
}

// get returns a copy of key's value.
func get(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// reading returns the database for a reader (Get, Scan, Stats, Compact,
// Snapshot), read-locked, once it has ingested what a bulk load holds
// pending (settle), so that the reader sees every batch applied before
// it; the caller must RUnlock.
func (s *Store) reading(ctx context.Context) (*pebble.DB, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	return s.open()
}

// open returns the database, read-locked; the caller must RUnlock.
func (s *Store) open() (*pebble.DB, error) {
	s.mu.RLock()
	if s.db == nil {
		s.mu.RUnlock()
		return nil, sdk.ErrClosed
	}
	return s.db, nil
}

// writing returns the database for a writer (Apply, BeginLoad, EndLoad):
// applyMu held, so writers run one at a time, and the database read-locked,
// so Close waits. release undoes both.
func (s *Store) writing() (db *pebble.DB, release func(), err error) {
	s.applyMu.Lock()
	if db, err = s.open(); err != nil {
		s.applyMu.Unlock()
		return nil, nil, err
	}
	return db, func() { s.mu.RUnlock(); s.applyMu.Unlock() }, nil
}

// readCursor reads the cursor record.
func readCursor(r pebble.Reader) (uint64, error) {
	rec, err := get(r, cursorKey)
	if err != nil {
		return 0, fmt.Errorf("cursor record: %w", err)
	}
	return decodeUint64("cursor", rec)
}

// Apply commits the batch's mutations, cursor, metadata and updated stats in
// one pebble batch. During a bulk load it keeps no stats, reads nothing,
// and gathers the batch with the others of the load for an ingest
// (applyLoading).
func (s *Store) Apply(ctx context.Context, b *sdk.Batch) error {
	db, release, err := s.writing()
	if err != nil {
		return err
	}
	defer release()
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.loading {
		return s.applyLoading(ctx, db, b)
	}
	var (
		c counts
		// sizes starts as the key+value size each key of the batch has in
		// the store (-1: absent) and follows the batch's mutations.
		sizes map[string]int
	)
	rec, err := get(db, statsKey)
	if err != nil {
		return fmt.Errorf("pebble: apply: stats record: %w", err)
	}
	if c, err = decodeCounts(rec); err != nil {
		return fmt.Errorf("pebble: apply: %w", err)
	}
	if sizes, err = storedSizes(db, b.Mutations); err != nil {
		return fmt.Errorf("pebble: apply: %w", err)
	}
	wb := db.NewBatch()
	defer wb.Close()
	for i := range b.Mutations {
		m := &b.Mutations[i]
		now := -1
		switch m.Op {
		case sdk.OpPut:
			putData(wb, m.Key, m.Revision, m.Value)
			now = len(m.Key) + len(m.Value)
		case sdk.OpDelete:
			deleteData(wb, m.Key)
		default:
			return fmt.Errorf("pebble: apply: mutation %d has unknown op %v", i, m.Op)
		}
		c = c.replace(sizes[string(m.Key)], now)
		sizes[string(m.Key)] = now
	}
	_ = wb.Set(cursorKey, encodeUint64(b.Cursor), nil)
	for name, v := range b.Meta {
		_ = wb.Set(metaKey(name), v, nil)
	}
	_ = wb.Set(statsKey, c.encode(), nil)
	if err := ctx.Err(); err != nil {
		return err // the last moment at which giving up commits nothing
	}
	if err := wb.Commit(s.wo); err != nil {
		return fmt.Errorf("pebble: commit batch up to cursor %d: %w", b.Cursor, err)
	}
	s.sched.start() // the catch-up after Open is in (scheduler.go)
	return nil
}

// storedSizes looks up each distinct key of ms and returns its key+value
// size in the store, or -1 when absent. One iterator seeking through the
// sorted keys costs less per key than a Get (BENCHMARKS.md), and the value
// itself is not read.
func storedSizes(db *pebble.DB, ms []sdk.Mutation) (map[string]int, error) {
	sizes := make(map[string]int, len(ms))
	keys := make([][]byte, 0, len(ms))
	for i := range ms {
		if _, ok := sizes[string(ms[i].Key)]; !ok {
			sizes[string(ms[i].Key)] = -1
			keys = append(keys, ms[i].Key)
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	// Pebble skips the bottom level's filters by default (CockroachDB's
	// reads mostly find their key); these lookups mostly do not.
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: dataPrefix, UpperBound: dataEnd, UseL6Filters: true})
	if err != nil {
		return nil, err
	}
	var dk []byte
	for _, k := range keys {
		dk = append(append(dk[:0], dataPrefix...), k...)
		// With pebble's default comparer the "prefix" is the whole key: an
		// exact lookup that consults the bloom filters.
		if !it.SeekPrefixGE(dk) {
			continue
		}
		lv := it.LazyValue()
		if n := lv.Len(); n >= 8 {
			sizes[string(k)] = len(k) + n - 8
		} else {
			_ = it.Close()
			return nil, fmt.Errorf("key %q: %w", k, errShortRecord)
		}
	}
	return sizes, it.Close()
}

// replace accounts for an entry of size prev (-1: absent) becoming size now.
func (c counts) replace(prev, now int) counts {
	if prev >= 0 {
		c.keys--
		c.bytes -= uint64(prev)
	}
	if now >= 0 {
		c.keys++
		c.bytes += uint64(now)
	}
	return c
}

// Get returns the entry for key, or sdk.ErrNotFound.
func (s *Store) Get(ctx context.Context, key []byte) (sdk.Entry, error) {
	db, err := s.reading(ctx)
	if err != nil {
		return sdk.Entry{}, err
	}
	defer s.mu.RUnlock()
	rec, err := get(db, dataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	if err != nil {
		return sdk.Entry{}, fmt.Errorf("pebble: get %q: %w", key, err)
	}
	rev, value, err := decodeValue(rec)
	if err != nil {
		return sdk.Entry{}, fmt.Errorf("pebble: get %q: %w", key, err)
	}
	return sdk.Entry{Key: key, Value: value, Revision: rev}, nil
}

// Scan calls fn for each entry of r in key order. The entries alias the
// iterator's memory and are valid only until fn returns.
func (s *Store) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	db, err := s.reading(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return scanData(ctx, db, r, fn)
}

// scanData is Scan over rd: the database, or a snapshot of it (a view).
func scanData(ctx context.Context, rd pebble.Reader, r sdk.Range, fn func(sdk.Entry) error) (err error) {
	if r.Limit < 0 {
		return fmt.Errorf("pebble: scan: negative limit %d", r.Limit)
	}
	lower, upper, ok := bounds(r.Prefix, r.Start, r.End, r.After)
	if !ok {
		return nil
	}
	it, err := rd.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("pebble: scan: %w", err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("pebble: scan: %w", cerr)
		}
	}()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("pebble: scan: %w", err)
		}
		key := it.Key()[len(dataPrefix):]
		rev, value, err := decodeValue(rec)
		if err != nil {
			return fmt.Errorf("pebble: scan: key %q: %w", key, err)
		}
		e := sdk.Entry{Key: key, Revision: rev}
		if !r.KeysOnly {
			e.Value = value
		}
		if err := fn(e); err != nil {
			return err
		}
		if n++; n == r.Limit {
			break
		}
	}
	return nil
}

// Stats reports the counters committed with the last batch and pebble's
// disk usage. During a bulk load, which keeps no counters, it counts the
// data keys instead: exact, but a full scan.
func (s *Store) Stats(ctx context.Context) (sdk.Stats, error) {
	// A count after a load under way is the same pass over the same keys
	// Stats would make: wait for it, and read the stats record it leaves.
	s.countMu.Lock()
	done := s.countDone
	s.countMu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return sdk.Stats{}, ctx.Err()
		}
	}
	db, err := s.reading(ctx)
	if err != nil {
		return sdk.Stats{}, err
	}
	defer s.mu.RUnlock()
	c, err := storedCounts(ctx, db)
	if err != nil {
		return sdk.Stats{}, fmt.Errorf("pebble: stats: %w", err)
	}
	return sdk.Stats{Keys: c.keys, Bytes: c.bytes, DiskBytes: db.Metrics().DiskSpaceUsage()}, nil
}

// storedCounts returns the stats record or, during a bulk load or the
// count after one (countAfterLoad), the counts of the data keys. All of it
// is read from one snapshot, so a BeginLoad, an EndLoad or the end of a
// count committed meanwhile cannot mix two states.
func storedCounts(ctx context.Context, db *pebble.DB) (counts, error) {
	snap := db.NewSnapshot()
	defer snap.Close()
	for _, key := range [][]byte{loadingKey, countingKey} {
		switch found, err := has(snap, key); {
		case err != nil:
			return counts{}, err
		case found:
			return countData(ctx, snap)
		}
	}
	rec, err := get(snap, statsKey)
	if err != nil {
		return counts{}, fmt.Errorf("stats record: %w", err)
	}
	return decodeCounts(rec)
}

// countData counts the data keys of r and their key+value bytes, in one
// pass in key order that reads no value (only its length).
func countData(ctx context.Context, r pebble.Reader) (c counts, err error) {
	it, err := r.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: dataPrefix, UpperBound: dataEnd})
	if err != nil {
		return counts{}, err
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		if c.keys%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return counts{}, err
			}
		}
		lv := it.LazyValue()
		n := lv.Len()
		if n < 8 {
			return counts{}, fmt.Errorf("key %q: %w", it.Key()[len(dataPrefix):], errShortRecord)
		}
		c.keys++
		c.bytes += uint64(len(it.Key()) - len(dataPrefix) + n - 8)
	}
	return c, nil
}

// BeginLoad starts a bulk load into an empty store: it drops the stats
// record and writes the loading record, in one batch. Until EndLoad, Apply
// writes its batches without looking up the keys they touch. BeginLoad on a
// store that is already loading and still empty does nothing; on a store
// that holds a data key or a cursor it fails.
func (s *Store) BeginLoad(ctx context.Context) error {
	db, release, err := s.writing()
	if err != nil {
		return err
	}
	defer release()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.ingestPending(ctx, db); err != nil {
		return fmt.Errorf("pebble: begin load: %w", err)
	}
	cursor, err := readCursor(db)
	if err != nil {
		return fmt.Errorf("pebble: begin load: %w", err)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: dataPrefix, UpperBound: dataEnd})
	if err != nil {
		return fmt.Errorf("pebble: begin load: %w", err)
	}
	hasKeys := it.First()
	if err := it.Close(); err != nil {
		return fmt.Errorf("pebble: begin load: %w", err)
	}
	if cursor != 0 || hasKeys {
		return fmt.Errorf("pebble: begin load: the store is not empty (cursor %d, holds keys: %v); a bulk load needs a new store", cursor, hasKeys)
	}
	if s.loading {
		return nil
	}
	wb := db.NewBatch()
	defer wb.Close()
	_ = wb.Set(loadingKey, nil, nil)
	_ = wb.Delete(statsKey, nil)
	_ = wb.Delete(countingKey, nil) // a count after an empty load: this load's replaces it
	// Synced whatever the config: the load's ingests skip the log, and an
	// ingest that overlaps nothing in the memtable is recorded in pebble's
	// manifest without syncing the log. Unsynced, this batch could be lost
	// in a crash that keeps an ingest after it: loaded data with the stats
	// record of an empty store and no loading record.
	if err := wb.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebble: begin load: %w", err)
	}
	s.loading = true
	s.countGen++ // a count under way has lost its counting record
	return nil
}

// EndLoad ends a bulk load: in one batch, synced, it removes the loading
// record and starts the stats record over at zero with the counting record
// beside it, then leaves the count of the loaded keys to countAfterLoad.
// It does nothing on a store that is not loading. Apply waits for it.
func (s *Store) EndLoad(ctx context.Context) error {
	db, release, err := s.writing()
	if err != nil {
		return err
	}
	defer release()
	if !s.loading {
		return nil
	}
	if err := s.ingestPending(ctx, db); err != nil {
		return fmt.Errorf("pebble: end load: %w", err)
	}
	wb := db.NewBatch()
	defer wb.Close()
	_ = wb.Set(statsKey, counts{}.encode(), nil)
	_ = wb.Set(countingKey, nil, nil)
	_ = wb.Delete(loadingKey, nil)
	if err := ctx.Err(); err != nil {
		return err
	}
	// Synced whatever the config: the log is written in order, so this
	// makes every batch of the load durable too, before the host publishes
	// the generation.
	if err := wb.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebble: end load: %w", err)
	}
	s.loading = false
	s.pending.release() // its memory is no longer needed
	// applyMu is held: the snapshot is the state this batch left, whose
	// stats record is zero.
	s.startCount(db, db.NewSnapshot(), counts{})
	return nil
}

// startCount runs countAfterLoad on snap, a snapshot of db whose stats
// record held base, in a goroutine of its own, as the count numbered
// countGen+1. It takes snap over. The caller holds applyMu, or mu before
// any Apply can run (Open).
func (s *Store) startCount(db *pebble.DB, snap *pebble.Snapshot, base counts) {
	s.countGen++
	gen := s.countGen
	// Under countMu, so that a Close that stopped the counts (stopCount)
	// sees this one, or this one sees it stopped and leaves the count to
	// the next Open.
	s.countMu.Lock()
	defer s.countMu.Unlock()
	ctx := s.countCtx
	if ctx.Err() != nil {
		_ = snap.Close()
		return
	}
	s.countWG.Add(1)
	done := make(chan struct{})
	s.countDone = done
	go func() {
		defer s.countWG.Done()
		defer close(done)
		if err := s.countAfterLoad(ctx, gen, db, snap, base); err != nil && ctx.Err() == nil {
			s.logger.Error("counting the keys of a bulk load failed; Stats counts them on each call until the store is opened again", "err", err)
		}
	}()
}

// countAfterLoad makes the stats record exact again after a bulk load,
// away from EndLoad, whose caller waits to publish the fold: counting a
// large load takes a pass over all of it.
//
// From EndLoad on, the stats record holds only the changes Apply made
// since (in modular arithmetic, so it may go below zero), and the counting
// record says so. countAfterLoad counts the data keys of snap, a snapshot
// of the store taken when the stats record held base; then, with writers
// held off, it commits the count plus what Apply added since snap and
// removes the counting record. Until then Stats counts the data itself.
// A Close or a crash in between leaves the counting record, and Open
// starts the count again.
func (s *Store) countAfterLoad(ctx context.Context, gen uint64, db *pebble.DB, snap *pebble.Snapshot, base counts) error {
	c, err := countData(ctx, snap)
	if cerr := snap.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if s.countPause != nil {
		select {
		case <-s.countPause:
		case <-ctx.Done():
		}
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if gen != s.countGen {
		return nil // a BeginLoad on the empty store removed the counting record
	}
	rec, err := get(db, statsKey)
	if err != nil {
		return fmt.Errorf("stats record: %w", err)
	}
	now, err := decodeCounts(rec)
	if err != nil {
		return err
	}
	wb := db.NewBatch()
	defer wb.Close()
	_ = wb.Set(statsKey, c.plus(now, base).encode(), nil)
	_ = wb.Delete(countingKey, nil)
	return wb.Commit(s.wo)
}

// stopCount stops the counts under way and waits for their end. Close
// calls it before it takes mu: a count's last step waits for applyMu,
// which an Apply may hold while it waits for mu.
func (s *Store) stopCount() {
	s.countMu.Lock()
	if s.countStop != nil {
		s.countStop()
	}
	s.countMu.Unlock()
	s.countWG.Wait()
}

// Compact compacts the whole data range, as after a bulk load: it flushes
// the memtable and rewrites the data into the bottom level.
func (s *Store) Compact(ctx context.Context) error {
	db, err := s.reading(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := db.Compact(ctx, dataPrefix, dataEnd, true); err != nil {
		return fmt.Errorf("pebble: compact: %w", err)
	}
	return nil
}

// Close closes the views still open, then the database. It waits for
// running calls to finish, a view's Scan among them.
func (s *Store) Close(context.Context) error {
	s.stopCount()
	// applyMu before mu, as writers take them: no Apply may add to the
	// pending batches once they are ingested.
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return sdk.ErrClosed
	}
	var errs []error
	// A load's pending batches are ingested, so that a load goes on from
	// all of them after a clean restart; failing that, they are lost, as
	// in a crash, and the cursor still agrees with what is left.
	if err := s.ingestPending(context.Background(), s.db); err != nil {
		errs = append(errs, err)
	}
	s.pending.release()
	s.hasPending.Store(false)
	s.viewsMu.Lock()
	views := s.views
	s.views = nil
	s.viewsMu.Unlock()
	for v := range views {
		if _, err := v.release(); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(append(errs, s.db.Close())...)
	s.db = nil
	if err != nil {
		return fmt.Errorf("pebble: close: %w", err)
	}
	return nil
}

// Snapshot opens a view at the last committed batch (sdk.Snapshotter): a
// pebble snapshot, from which the cursor and metadata are read too, so
// they are those of the view's data. Apply goes on beside it; a view of a
// store in a bulk load reads the load's data so far.
func (s *Store) Snapshot(ctx context.Context) (sdk.Snapshot, error) {
	db, err := s.reading(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	snap := db.NewSnapshot()
	st, err := readState(snap)
	if err != nil {
		_ = snap.Close()
		return nil, fmt.Errorf("pebble: snapshot: %w", err)
	}
	st.Loading = false
	v := &view{s: s, snap: snap, state: st}
	s.viewsMu.Lock()
	defer s.viewsMu.Unlock()
	if s.views == nil {
		s.views = map[*view]struct{}{}
	}
	s.views[v] = struct{}{}
	return v, nil
}

// errViewClosed is what a closed view answers: by its Close or the store's.
var errViewClosed = fmt.Errorf("pebble: the snapshot is closed: %w", sdk.ErrClosed)

// view is an sdk.Snapshot over a pebble snapshot. While open it keeps
// compactions from dropping the versions it reads (see the package doc).
type view struct {
	s     *Store
	state sdk.State

	mu   sync.Mutex       // held by Scan and release: no Close under a Scan
	snap *pebble.Snapshot // nil once closed
}

func (v *view) State() sdk.State {
	st := v.state
	st.Meta = maps.Clone(st.Meta)
	return st
}

// Scan is Store.Scan over the view. It holds no lock of the store: Apply
// goes on while it reads.
func (v *view) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.snap == nil {
		return errViewClosed
	}
	return scanData(ctx, v.snap, r, fn)
}

// Close closes the view; closing it again does nothing.
func (v *view) Close() error {
	was, err := v.release()
	if was {
		v.s.viewsMu.Lock()
		delete(v.s.views, v)
		v.s.viewsMu.Unlock()
	}
	return err
}

// release closes the pebble snapshot unless it is closed already, and
// reports whether it was open. Store.Close calls it before it closes the
// database, which refuses to close with a snapshot open.
func (v *view) release() (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.snap == nil {
		return false, nil
	}
	err := v.snap.Close()
	v.snap = nil
	if err != nil {
		return true, fmt.Errorf("pebble: close snapshot: %w", err)
	}
	return true, nil
}
