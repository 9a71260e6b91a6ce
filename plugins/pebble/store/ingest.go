package store

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/slipstreamkv/slipstream/sdk"
)

// ingestDir is the directory, inside the store's, where a bulk load's
// tables are written before pebble ingests them. Pebble links each table
// into its own directory; the names left here are removed after the
// ingest, and by Open after a crash.
const ingestDir = "ingest"

// pending holds the batches of a bulk load applied since the last ingest
// (package doc, "Bulk load"): their mutations in arrival order, and the
// cursor and metadata of the last. Its memory is kept from one ingest to
// the next and returned at the end of the load (release).
type pending struct {
	buf     []byte  // every entry's data key, then its record (revision + value)
	ents    []entry // in arrival order until sorted
	mem     []byte  // the region buf and ents begin in (mapRegion), or nil
	meta    map[string][]byte
	cursor  uint64
	batches int // batches held; 0 means nothing is pending
}

// entry is one mutation of pending, located in buf. seq orders two
// mutations of one key: the later wins.
type entry struct {
	// abbr is eight bytes of the key, where the keys of the buffer begin
	// to differ, big-endian (sortEntries).
	abbr       uint64
	key, rec   uint32 // offsets into buf
	klen, rlen uint32
	seq        uint32
	del        bool
}

// entryOverhead is what an entry costs besides its bytes in buf, counted
// against the load buffer's size.
const entryOverhead = 32

// size is the memory pending holds, as counted against the load buffer.
func (p *pending) size() int {
	return len(p.buf) + entryOverhead*len(p.ents)
}

// add appends b's mutations, cursor and metadata. The batch's slices are
// copied: the caller may reuse them once Apply returns.
func (p *pending) add(b *sdk.Batch) error {
	for i := range b.Mutations {
		m := &b.Mutations[i]
		e := entry{seq: uint32(len(p.ents)), klen: uint32(len(dataPrefix) + len(m.Key))}
		switch m.Op {
		case sdk.OpPut:
			e.rlen = uint32(8 + len(m.Value))
		case sdk.OpDelete:
			e.del = true
		default:
			return fmt.Errorf("mutation %d has unknown op %v", i, m.Op)
		}
		if uint64(len(p.buf))+uint64(e.klen)+uint64(e.rlen) > 1<<32-1 || len(p.ents) == 1<<32-1 {
			// Far above any load buffer: an ingest comes first.
			return errors.New("the load buffer is full")
		}
		e.key = uint32(len(p.buf))
		p.buf = append(append(p.buf, dataPrefix...), m.Key...)
		e.rec = uint32(len(p.buf))
		if !e.del {
			p.buf = binary.BigEndian.AppendUint64(p.buf, m.Revision)
			p.buf = append(p.buf, m.Value...)
		}
		p.ents = append(p.ents, e)
	}
	for name, v := range b.Meta {
		if p.meta == nil {
			p.meta = map[string][]byte{}
		}
		p.meta[name] = slices.Clone(v)
	}
	p.cursor = b.Cursor
	p.batches++
	return nil
}

// mark is where p ends, for undo.
type mark struct{ buf, ents int }

func (p *pending) mark() mark { return mark{len(p.buf), len(p.ents)} }

// undo drops the mutations added since m, as by a batch that add refused
// midway (add changes the cursor and metadata only once it cannot fail).
func (p *pending) undo(m mark) {
	p.buf, p.ents = p.buf[:m.buf], p.ents[:m.ents]
}

// alloc gives p room for bufSize bytes and n entries in one region
// (mapRegion: outside the Go heap on Linux). Where mapping fails, both are
// allocated on the heap, which holds every byte it is given: the entries
// then start at a quarter of n. Either grows by append, onto the heap, if
// a batch needs more.
func (p *pending) alloc(bufSize, n int) {
	entsSize := n * int(unsafe.Sizeof(entry{}))
	mem, err := mapRegion(entsSize + bufSize)
	if err != nil {
		p.buf, p.ents = make([]byte, 0, bufSize), make([]entry, 0, n/4)
		return
	}
	// The region is page-aligned, entry's alignment is at most 8, and an
	// entry holds no pointers.
	p.mem = mem
	p.ents = unsafe.Slice((*entry)(unsafe.Pointer(&mem[0])), n)[:0]
	p.buf = mem[entsSize:entsSize:len(mem)]
}

// release empties p and returns its memory. Nothing may keep a slice of
// buf or ents past it.
func (p *pending) release() {
	mem := p.mem
	*p = pending{}
	if mem != nil {
		_ = unmapRegion(mem) // only fails for a slice mapRegion did not give
	}
}

// reset empties p and keeps its memory for the next batches.
func (p *pending) reset() {
	p.buf, p.ents, p.batches = p.buf[:0], p.ents[:0], 0
	clear(p.meta)
}

func (p *pending) keyOf(e *entry) []byte { return p.buf[e.key : e.key+e.klen] }
func (p *pending) recOf(e *entry) []byte { return p.buf[e.rec : e.rec+e.rlen] }

// sortEntries sorts the entries by key, and two of one key in arrival
// order. A load in key order (an artifact's import) is sorted already,
// which the check finds in one pass.
//
// Most comparisons look at one integer: each entry carries the eight bytes
// of its key that follow the prefix all the buffer's keys share (zeros
// past its end), and two keys whose eight bytes differ compare as those
// do. Keys of one shape share long prefixes (route.t0042.svc-...): compared
// whole, each comparison walked the prefix again, most of the sort's time.
func (p *pending) sortEntries() {
	if len(p.ents) == 0 {
		return
	}
	first := p.keyOf(&p.ents[0])
	lcp := len(first)
	for i := 1; i < len(p.ents) && lcp > 0; i++ {
		k := p.keyOf(&p.ents[i])
		n := min(lcp, len(k))
		lcp = 0
		for lcp < n && k[lcp] == first[lcp] {
			lcp++
		}
	}
	var window [8]byte
	for i := range p.ents {
		e := &p.ents[i]
		k := p.keyOf(e)
		window = [8]byte{}
		if lcp < len(k) {
			copy(window[:], k[lcp:])
		}
		e.abbr = binary.BigEndian.Uint64(window[:])
	}
	order := func(a, b entry) int {
		if a.abbr != b.abbr {
			return cmp.Compare(a.abbr, b.abbr)
		}
		if c := bytes.Compare(p.keyOf(&a), p.keyOf(&b)); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	}
	if !slices.IsSortedFunc(p.ents, order) {
		slices.SortFunc(p.ents, order)
	}
}

// ingestPending writes what pending holds to tables and has pebble ingest
// them in one step: the data in one table, the cursor and metadata in
// another, so that the data of a load in key order does not overlap the
// tables of the ingests before it and pebble places it in the bottom
// level, where no compaction rewrites it. An ingest is atomic: a crash
// leaves all the pending batches or none. The caller holds applyMu and
// mu (read). On failure pending is kept whole, and the next call tries
// again.
func (s *Store) ingestPending(ctx context.Context, db *pebble.DB) (err error) {
	p := &s.pending
	if p.batches == 0 {
		return nil
	}
	dir := filepath.Join(s.dir, ingestDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pebble: ingest: %w", err)
	}
	s.ingests++
	base := filepath.Join(dir, strconv.FormatUint(s.ingests, 10))
	var paths []string
	defer func() {
		for _, path := range paths {
			if rerr := os.Remove(path); rerr != nil && err == nil && !errors.Is(rerr, os.ErrNotExist) {
				err = fmt.Errorf("pebble: ingest: %w", rerr)
			}
		}
	}()

	p.sortEntries()
	format := db.TableFormat()
	if len(p.ents) > 0 {
		path := base + "-data.sst"
		paths = append(paths, path)
		err := s.writeTable(path, format, func(w *sstable.Writer) error {
			for i := range p.ents {
				if i%4096 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				e := &p.ents[i]
				if i+1 < len(p.ents) && bytes.Equal(p.keyOf(e), p.keyOf(&p.ents[i+1])) {
					continue // a later mutation of the key follows
				}
				var err error
				if e.del {
					err = w.Delete(p.keyOf(e))
				} else {
					err = w.Set(p.keyOf(e), p.recOf(e))
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("pebble: ingest: write %s: %w", path, err)
		}
	}
	path := base + "-state.sst"
	paths = append(paths, path)
	err = s.writeTable(path, format, func(w *sstable.Writer) error {
		for _, name := range slices.Sorted(maps.Keys(p.meta)) {
			if err := w.Set(metaKey(name), p.meta[name]); err != nil {
				return err
			}
		}
		return w.Set(cursorKey, encodeUint64(p.cursor))
	})
	if err != nil {
		return fmt.Errorf("pebble: ingest: write %s: %w", path, err)
	}
	if err := db.Ingest(ctx, paths); err != nil {
		return fmt.Errorf("pebble: ingest %d batches up to cursor %d: %w", p.batches, p.cursor, err)
	}
	p.reset()
	s.hasPending.Store(false)
	return nil
}

// writeTable writes one table at path, synced, with the options of the
// database's levels (its bloom filters among them).
func (s *Store) writeTable(path string, format sstable.TableFormat, fill func(*sstable.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tf := &tableFile{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	w := sstable.NewWriter(tf, s.opts.MakeWriterOptions(0, format))
	if err := fill(w); err != nil {
		tf.aborted = true // the table is removed: Close need not write or sync it
		_ = w.Close()
		return err
	}
	return w.Close() // syncs the file
}

// tableFile is the file a table is written to, through a buffer of a
// megabyte: pebble's own buffers 4 KiB, a write system call per block.
type tableFile struct {
	f       *os.File
	w       *bufio.Writer
	aborted bool // by writeTable: writes are dropped, Finish only closes
}

var _ objstorage.Writable = (*tableFile)(nil)

func (t *tableFile) Write(p []byte) error {
	if t.aborted {
		return nil
	}
	_, err := t.w.Write(p)
	return err
}

// Finish flushes, syncs and closes the file.
func (t *tableFile) Finish() error {
	if t.aborted {
		return t.f.Close()
	}
	err := t.w.Flush()
	if err == nil {
		err = t.f.Sync()
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (t *tableFile) Abort() { _ = t.f.Close() }

// removeIngestDir removes the tables an ingest cut short left behind.
func removeIngestDir(dir string) error {
	if err := os.RemoveAll(filepath.Join(dir, ingestDir)); err != nil {
		return fmt.Errorf("pebble: remove the tables of an interrupted ingest: %w", err)
	}
	return nil
}

// settle ingests what a bulk load holds pending, so that a read sees every
// batch applied before it began. It costs an atomic load when nothing is
// pending, which is always outside a load. reading calls it before it
// takes mu; settle takes applyMu, which is taken before mu.
//
// The ingest is not bound by the read's context: a reader whose deadline
// is shorter than an ingest would otherwise cut every attempt short, and
// each would sort and write the buffer again.
func (s *Store) settle(ctx context.Context) error {
	if !s.hasPending.Load() {
		return nil
	}
	db, release, err := s.writing()
	if err != nil {
		return err
	}
	defer release()
	return s.ingestPending(context.WithoutCancel(ctx), db)
}

// applyLoading is Apply during a bulk load: the batch joins the pending
// ones, which are ingested first when they fill the load buffer, so the
// buffer exceeds its size by at most one batch. A failed ingest leaves
// the batch out, and the pending ones whole.
func (s *Store) applyLoading(ctx context.Context, db *pebble.DB, b *sdk.Batch) error {
	if s.pending.buf == nil {
		// Growing by doubling would copy a full buffer over and over, in
		// copies the garbage collector cannot interrupt. A mapped region
		// costs only the pages touched, so it is sized for the worst case:
		// the buffer full and one batch more (of up to an eighth of it;
		// a larger batch goes on the heap), and every entry as small as
		// size counts it.
		s.pending.alloc(s.loadBuffer+s.loadBuffer/8, s.loadBuffer/entryOverhead+1)
	}
	if s.pending.size() >= s.loadBuffer {
		if err := s.ingestPending(ctx, db); err != nil {
			return err
		}
	}
	mark := s.pending.mark()
	if err := s.pending.add(b); err != nil {
		s.pending.undo(mark)
		return fmt.Errorf("pebble: apply batch up to cursor %d: %w", b.Cursor, err)
	}
	s.hasPending.Store(true)
	return nil
}
