// Package refstore is a simple, correct sdk.Store for the conformance
// suite's own tests, with knobs that each break it in one way. The suite
// passes against the correct store and fails, in the case built for that
// fault, against each broken one.
package refstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
)

// Knobs break the store; all are off in the correct store.
type Knobs struct {
	// LazyData: Apply commits the cursor and metadata; the data waits for
	// Close, so a crash loses it.
	LazyData bool
	// LazyCursor: Apply commits the data; the cursor and metadata wait for
	// Close.
	LazyCursor bool
	// VolatileData: the data never reaches the file.
	VolatileData bool
	// SplitCommit: Apply commits the data, pauses, then commits the cursor
	// and metadata, so a process killed in between has one without the
	// other.
	SplitCommit bool
	// Torn: Apply lets readers in between mutations.
	Torn bool
	// Chunked: Apply commits 64 mutations at a time and gives up between
	// chunks when its context is cancelled, keeping what it committed.
	Chunked bool
	// OverwriteMeta: a batch's metadata replaces the stored metadata.
	OverwriteMeta bool
	// AcceptCorrupt: Open starts over when its file does not decode.
	AcceptCorrupt bool

	// The bulk-load knobs. During a load (sdk.Loader) the store appends
	// each batch's mutations to a log, and EndLoad folds the log into the
	// data; readers see the fold of both.

	// LoadFirstWins: EndLoad keeps the first put of a key the load put more
	// than once, instead of the last.
	LoadFirstWins bool
	// LoadDropsDeletes: EndLoad folds the load's puts and forgets its
	// deletes.
	LoadDropsDeletes bool
	// VolatileLoading: the file does not record that a load is under way,
	// so Open in the middle of one reports State.Loading false.
	VolatileLoading bool
	// LoadCountsRows: EndLoad records the rows the load wrote (every put)
	// as the key count, instead of the keys left, and Stats reports it
	// from then on.
	LoadCountsRows bool
	// LoadAnywhere: BeginLoad on a store that holds keys or a cursor
	// succeeds, and starts the fold over, empty.
	LoadAnywhere bool
	// LoadBuffered: during a load, Apply commits the cursor and metadata
	// but keeps the load's log in memory until EndLoad or Close, so a crash
	// loses it.
	LoadBuffered bool
	// LoadLosesFirst: during a load, the file keeps every batch of the
	// load but the first, so a crash reopens the store at the last batch's
	// cursor without the first batch's data: a later batch kept while an
	// earlier one is lost, which no crash may leave (sdk.Loader).
	LoadLosesFirst bool

	// The snapshot knobs (sdk.Snapshotter). A view keeps the maps of the
	// batch it was opened at, which no later Apply changes.

	// SnapshotBlocksApply: a view's Scan holds the store's lock, so an
	// Apply waits for it to end.
	SnapshotBlocksApply bool
	// SnapshotOutlivesClose: Close leaves the store's views open, still
	// reading the fold they were opened at.
	SnapshotOutlivesClose bool
}

// splitPause is how long a SplitCommit store waits between its two commits:
// most of an Apply, so that kill-mid-apply, which kills at points spread
// over twice the length of an Apply, lands a kill in it.
const splitPause = time.Second

// Store keeps the fold in maps under one lock and commits by rewriting one
// gob file. A killed Store stops answering and writes nothing more, as a
// crashed process would.
//
// Apply builds the next fold aside and publishes it whole, and never
// changes a map once published: a view (Snapshot) is those maps.
type Store struct {
	Knobs

	mu     sync.RWMutex
	open   bool
	killed bool
	dir    string
	mem    state // what readers see, through data()
	disk   state // what the file holds; the lazy knobs make it lag
	// folded is mem.Data with mem.Log folded in, kept while the log is not
	// empty.
	folded map[string]sdk.Entry

	viewsMu sync.Mutex
	views   map[*view]struct{} // the open views

	// lost is the span of the load's log that the first batch applied
	// since Open or BeginLoad wrote, which LoadLosesFirst keeps from the
	// file; lostSet says it is known.
	lost    [2]int
	lostSet bool
}

// New returns a closed store broken by k.
func New(k Knobs) *Store { return &Store{Knobs: k} }

// state is a fold, and the content of the gob file.
type state struct {
	Cursor uint64
	Meta   map[string][]byte
	Data   map[string]sdk.Entry
	// Loading: a bulk load was begun and not ended. Log is what the load
	// has applied since, in order; EndLoad folds it into Data.
	Loading bool
	Log     []sdk.Mutation
	// KeySkew is added to the key count Stats reports: always 0 but with
	// the LoadCountsRows knob.
	KeySkew int64
}

func emptyState() state {
	return state{Meta: map[string][]byte{}, Data: map[string]sdk.Entry{}}
}

func (s state) clone() state {
	return state{Cursor: s.Cursor, Meta: maps.Clone(s.Meta), Data: maps.Clone(s.Data),
		Loading: s.Loading, Log: slices.Clone(s.Log), KeySkew: s.KeySkew}
}

// fold applies log to a copy of data: the last mutation of a key wins, but
// with the knobs that break EndLoad.
func fold(data map[string]sdk.Entry, log []sdk.Mutation, k Knobs) map[string]sdk.Entry {
	out := maps.Clone(data)
	put := map[string]bool{}
	for _, m := range log {
		key := string(m.Key)
		switch m.Op {
		case sdk.OpPut:
			if k.LoadFirstWins && put[key] {
				continue
			}
			put[key] = true
			out[key] = sdk.Entry{Key: m.Key, Value: m.Value, Revision: m.Revision}
		case sdk.OpDelete:
			if !k.LoadDropsDeletes {
				delete(out, key)
			}
		}
	}
	return out
}

// data is the fold readers see: mem.Data, with the load's log folded in.
func (r *Store) data() map[string]sdk.Entry {
	if len(r.mem.Log) == 0 {
		return r.mem.Data
	}
	return r.folded
}

// refold recomputes what data returns after r.mem changed.
func (r *Store) refold() {
	r.folded = nil
	if len(r.mem.Log) > 0 {
		r.folded = fold(r.mem.Data, r.mem.Log, Knobs{})
	}
}

const fileName = "ref.gob"

var errKilled = errors.New("reference store: instance was killed")

// Open loads dir's file. The config must be a JSON object with no keys.
func (r *Store) Open(_ context.Context, dir string, config []byte) (sdk.State, error) {
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&struct{}{}); err != nil {
		return sdk.State{}, fmt.Errorf("reference store config: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.killed {
		return sdk.State{}, errKilled
	}
	r.lostSet = false
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sdk.State{}, err
	}
	st, err := read(filepath.Join(dir, fileName))
	if err != nil && r.AcceptCorrupt {
		st, err = emptyState(), nil
	}
	if err != nil {
		return sdk.State{}, err
	}
	r.open, r.dir, r.mem, r.disk = true, dir, st, st.clone()
	r.refold()
	return sdk.State{Cursor: st.Cursor, Meta: maps.Clone(st.Meta), Loading: st.Loading}, nil
}

func read(path string) (state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return emptyState(), nil
	}
	if err != nil {
		return state{}, err
	}
	if len(b) < sha256.Size || sha256.Sum256(b[sha256.Size:]) != [sha256.Size]byte(b[:sha256.Size]) {
		return state{}, fmt.Errorf("reference store: %s fails its checksum", path)
	}
	st := emptyState()
	if err := gob.NewDecoder(bytes.NewReader(b[sha256.Size:])).Decode(&st); err != nil {
		return state{}, fmt.Errorf("reference store: %s: %w", path, err)
	}
	return st, nil
}

// write commits r.disk: a checksummed gob file, renamed into place.
func (r *Store) write() error {
	d := r.disk
	if r.VolatileLoading {
		d.Loading = false
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(d); err != nil {
		return err
	}
	sum := sha256.Sum256(buf.Bytes())
	tmp := filepath.Join(r.dir, fileName+".tmp")
	if err := os.WriteFile(tmp, append(sum[:], buf.Bytes()...), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.dir, fileName))
}

// usable says why the store cannot serve a call, if it cannot.
func (r *Store) usable() error {
	switch {
	case r.killed:
		return errKilled
	case !r.open:
		return sdk.ErrClosed
	}
	return nil
}

// Apply commits b, holding the lock throughout so readers see all of it or
// none of it (unless the Torn knob is set).
func (r *Store) Apply(ctx context.Context, b *sdk.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil && !r.Chunked {
		return err
	}
	next := r.mem.clone()
	if !next.Loading && len(next.Log) > 0 {
		// A log left by a load the file forgot (VolatileLoading).
		next.Data, next.Log = fold(next.Data, next.Log, Knobs{}), nil
	}
	logged := len(next.Log) // the load's log before this batch
	if next.Loading {
		for _, m := range b.Mutations {
			next.Log = append(next.Log, sdk.Mutation{Op: m.Op, Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value), Revision: m.Revision})
		}
		b = &sdk.Batch{Cursor: b.Cursor, Meta: b.Meta} // nothing left for the loop below
	}
	for i, m := range b.Mutations {
		switch m.Op {
		case sdk.OpPut:
			next.Data[string(m.Key)] = sdk.Entry{Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value), Revision: m.Revision}
		case sdk.OpDelete:
			delete(next.Data, string(m.Key))
		}
		if r.Torn {
			r.mem.Data = maps.Clone(next.Data)
			r.mu.Unlock()
			time.Sleep(20 * time.Microsecond)
			r.mu.Lock()
		}
		if r.Chunked && (i+1)%64 == 0 {
			r.mem.Data, r.disk.Data = maps.Clone(next.Data), maps.Clone(next.Data)
			if err := r.write(); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	next.Cursor = b.Cursor
	if r.OverwriteMeta && b.Meta != nil {
		next.Meta = map[string][]byte{}
	}
	for k, v := range b.Meta {
		next.Meta[k] = bytes.Clone(v)
	}
	r.mem = next
	r.refold()
	switch {
	case r.LazyData || r.VolatileData:
		r.disk.Cursor, r.disk.Meta = next.Cursor, maps.Clone(next.Meta)
	case r.LazyCursor:
		r.disk.Data, r.disk.Log = maps.Clone(next.Data), slices.Clone(next.Log)
	case r.LoadBuffered && next.Loading:
		r.disk.Cursor, r.disk.Meta = next.Cursor, maps.Clone(next.Meta)
	case r.LoadLosesFirst && next.Loading:
		if !r.lostSet {
			r.lost, r.lostSet = [2]int{logged, len(next.Log)}, true
		}
		r.disk = next.clone()
		r.disk.Log = append(slices.Clone(next.Log[:r.lost[0]]), next.Log[r.lost[1]:]...)
	case r.SplitCommit:
		r.disk.Data, r.disk.Log = maps.Clone(next.Data), slices.Clone(next.Log)
		if err := r.write(); err != nil {
			return err
		}
		time.Sleep(splitPause)
		r.disk = next.clone()
	default:
		r.disk = next.clone()
	}
	return r.write()
}

// Get returns key's entry, or sdk.ErrNotFound.
func (r *Store) Get(_ context.Context, key []byte) (sdk.Entry, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if err := r.usable(); err != nil {
		return sdk.Entry{}, err
	}
	e, ok := r.data()[string(key)]
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	return e, nil
}

// Scan is scanData over the fold readers see.
func (r *Store) Scan(ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if err := r.usable(); err != nil {
		return err
	}
	return scanData(ctx, r.data(), rg, fn)
}

// scanData sorts the keys of data and walks them from the first one past
// every lower bound to the first one past an upper bound.
func scanData(ctx context.Context, data map[string]sdk.Entry, rg sdk.Range, fn func(sdk.Entry) error) error {
	keys := slices.Sorted(maps.Keys(data))
	i := sort.Search(len(keys), func(i int) bool {
		k := keys[i]
		return k >= string(rg.Prefix) && k >= string(rg.Start) && (len(rg.After) == 0 || k > string(rg.After))
	})
	for n := 0; i < len(keys) && (rg.Limit == 0 || n < rg.Limit); i, n = i+1, n+1 {
		k := keys[i]
		if !bytes.HasPrefix([]byte(k), rg.Prefix) || (len(rg.End) > 0 && k >= string(rg.End)) {
			break
		}
		e := data[k]
		if rg.KeysOnly {
			e.Value = nil
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Stats counts the live keys and their bytes.
func (r *Store) Stats(context.Context) (sdk.Stats, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if err := r.usable(); err != nil {
		return sdk.Stats{}, err
	}
	var st sdk.Stats
	for _, e := range r.data() {
		st.Keys++
		st.Bytes += uint64(len(e.Key) + len(e.Value))
	}
	st.Keys = uint64(int64(st.Keys) + r.mem.KeySkew)
	return st, nil
}

// Close commits what the lazy knobs held back, and closes the store.
func (r *Store) Close(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	r.open = false
	if !r.SnapshotOutlivesClose {
		r.closeViews(sdk.ErrClosed)
	}
	if r.LazyData || r.LazyCursor || r.LoadBuffered || r.LoadLosesFirst {
		r.disk = r.mem.clone()
		return r.write()
	}
	return nil
}

// BeginLoad starts a bulk load into a store that holds no key and no
// cursor.
func (r *Store) BeginLoad(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	if r.mem.Cursor != 0 || len(r.data()) > 0 {
		if !r.LoadAnywhere {
			return fmt.Errorf("reference store: BeginLoad on a store that holds cursor %d and %d keys", r.mem.Cursor, len(r.data()))
		}
		r.mem, r.disk = emptyState(), emptyState()
		r.refold()
	}
	r.lostSet = false
	r.mem.Loading, r.disk.Loading = true, true
	return r.write()
}

// EndLoad folds the load's log into the data, in one commit.
func (r *Store) EndLoad(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	if !r.mem.Loading {
		return nil
	}
	if r.LoadBuffered || r.LoadLosesFirst {
		r.disk = r.mem.clone()
	}
	// The file and memory each fold their own log: the lazy knobs keep
	// the file behind, and keep it so.
	for _, st := range []*state{&r.mem, &r.disk} {
		data := fold(st.Data, st.Log, r.Knobs)
		if r.LoadCountsRows {
			rows := int64(len(st.Data))
			for _, m := range st.Log {
				if m.Op == sdk.OpPut {
					rows++
				}
			}
			st.KeySkew += rows - int64(len(data))
		}
		st.Data, st.Log, st.Loading = data, nil, false
	}
	r.refold()
	return r.write()
}

// Kill stops the store as a crash would: nothing more reaches the file and
// every later call fails.
func (r *Store) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killed = true
	r.closeViews(errKilled)
}

// Snapshot opens a view at the last committed batch (sdk.Snapshotter). It
// may open during a bulk load: the view reads the fold readers see.
func (r *Store) Snapshot(context.Context) (sdk.Snapshot, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if err := r.usable(); err != nil {
		return nil, err
	}
	v := &view{r: r, data: r.data(), state: sdk.State{Cursor: r.mem.Cursor, Meta: maps.Clone(r.mem.Meta)}}
	r.viewsMu.Lock()
	defer r.viewsMu.Unlock()
	if r.views == nil {
		r.views = map[*view]struct{}{}
	}
	r.views[v] = struct{}{}
	return v, nil
}

// closeViews closes every open view: later calls on one fail with err.
func (r *Store) closeViews(err error) {
	r.viewsMu.Lock()
	views := r.views
	r.views = nil
	r.viewsMu.Unlock()
	for v := range views {
		v.shut(err)
	}
}

// view is an sdk.Snapshot: the maps and state of one committed batch.
type view struct {
	r     *Store
	state sdk.State
	data  map[string]sdk.Entry

	mu  sync.Mutex
	err error // why the view is closed; nil while it is open
}

func (v *view) State() sdk.State {
	st := v.state
	st.Meta = maps.Clone(st.Meta)
	return st
}

// Scan is scanData over the view's fold. A Close while it runs lets it
// finish: the maps stay as they are.
func (v *view) Scan(ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
	v.mu.Lock()
	err := v.err
	v.mu.Unlock()
	if err != nil {
		return err
	}
	if v.r.SnapshotBlocksApply {
		v.r.mu.RLock()
		defer v.r.mu.RUnlock()
	}
	return scanData(ctx, v.data, rg, fn)
}

// Close closes the view; closing it again does nothing.
func (v *view) Close() error {
	if v.shut(sdk.ErrClosed) {
		v.r.viewsMu.Lock()
		delete(v.r.views, v)
		v.r.viewsMu.Unlock()
	}
	return nil
}

// shut closes the view, to fail later calls with err. It reports whether
// the view was open.
func (v *view) shut(err error) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err != nil {
		return false
	}
	v.err = err
	return true
}
