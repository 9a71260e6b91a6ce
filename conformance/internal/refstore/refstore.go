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
}

// splitPause is how long a SplitCommit store waits between its two commits:
// most of an Apply, so that kill-mid-apply, which kills at points spread
// over twice the length of an Apply, lands a kill in it.
const splitPause = time.Second

// Store keeps the fold in maps under one lock and commits by rewriting one
// gob file. A killed Store stops answering and writes nothing more, as a
// crashed process would.
type Store struct {
	Knobs

	mu     sync.RWMutex
	open   bool
	killed bool
	dir    string
	mem    state // what readers see
	disk   state // what the file holds; the lazy knobs make it lag
}

// New returns a closed store broken by k.
func New(k Knobs) *Store { return &Store{Knobs: k} }

// state is a fold, and the content of the gob file.
type state struct {
	Cursor uint64
	Meta   map[string][]byte
	Data   map[string]sdk.Entry
}

func emptyState() state {
	return state{Meta: map[string][]byte{}, Data: map[string]sdk.Entry{}}
}

func (s state) clone() state {
	return state{Cursor: s.Cursor, Meta: maps.Clone(s.Meta), Data: maps.Clone(s.Data)}
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
	return sdk.State{Cursor: st.Cursor, Meta: maps.Clone(st.Meta)}, nil
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
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(r.disk); err != nil {
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
	switch {
	case r.LazyData || r.VolatileData:
		r.disk.Cursor, r.disk.Meta = next.Cursor, maps.Clone(next.Meta)
	case r.LazyCursor:
		r.disk.Data = maps.Clone(next.Data)
	case r.SplitCommit:
		r.disk.Data = maps.Clone(next.Data)
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
	e, ok := r.mem.Data[string(key)]
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	return e, nil
}

// Scan sorts the keys and walks them from the first one past every lower
// bound to the first one past an upper bound.
func (r *Store) Scan(ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if err := r.usable(); err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(r.mem.Data))
	i := sort.Search(len(keys), func(i int) bool {
		k := keys[i]
		return k >= string(rg.Prefix) && k >= string(rg.Start) && (len(rg.After) == 0 || k > string(rg.After))
	})
	for n := 0; i < len(keys) && (rg.Limit == 0 || n < rg.Limit); i, n = i+1, n+1 {
		k := keys[i]
		if !bytes.HasPrefix([]byte(k), rg.Prefix) || (len(rg.End) > 0 && k >= string(rg.End)) {
			break
		}
		e := r.mem.Data[k]
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
	for _, e := range r.mem.Data {
		st.Keys++
		st.Bytes += uint64(len(e.Key) + len(e.Value))
	}
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
	if r.LazyData || r.LazyCursor {
		r.disk = r.mem.clone()
		return r.write()
	}
	return nil
}

// Kill stops the store as a crash would: nothing more reaches the file and
// every later call fails.
func (r *Store) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killed = true
}
