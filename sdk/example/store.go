package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/slipstreamkv/slipstream/sdk"
)

// Store keeps the whole fold in memory and in one file, fold.json, which
// every Apply rewrites. That makes each commit atomic with nothing but the
// file system: write a new file beside the old one, flush it to disk, and
// rename it over the old one. A crash before the rename leaves the old file,
// a crash after it the new one; never half of each.
//
// Rewriting the whole fold per batch costs time proportional to the fold, so
// this design suits folds of a few megabytes. A store for large folds keeps
// an ordered, transactional structure on disk instead (see plugins/pebble
// and plugins/sqlite); the contract it meets is the same.
type Store struct {
	// mu guards the fields below. Readers hold it only long enough to take
	// the current fold: a fold is never modified once published, so a
	// reader holding one sees exactly one committed batch, however long it
	// takes.
	mu   sync.RWMutex
	fold *fold // nil while the store is closed
	dir  string
	sync bool

	// applying serializes Apply, and makes Close wait for a running one.
	// sdk.Serve already does both; the mutex keeps the store correct when
	// it is called in-process too.
	applying sync.Mutex
}

// The optional interfaces a store may implement; implementing one is what
// declares it. Describer names the store in `slipstream conformance` output
// and in the host's log; a store that wants the plugin's logger would
// implement sdk.LoggerSetter, one that fills an empty fold faster in a bulk
// load sdk.Loader, one that can settle its files sdk.Compacter, and one
// that can hold a read view while Apply goes on sdk.Snapshotter.
//
// This store, the minimum, lacks sdk.Snapshotter: the host exports a fold
// of it with its applies paused while it reads. Its published folds are
// immutable, so a view would be one of them, kept with a flag that its
// Close and the store's Close set; plugins/pebble and plugins/sqlite show
// the same on disk.
var (
	_ sdk.Store     = (*Store)(nil)
	_ sdk.Describer = (*Store)(nil)
)

// Describe tells the host what this plugin is. The store implements no
// other optional interface, so the conformance suite skips their cases.
func (s *Store) Describe() sdk.Info {
	return sdk.Info{Name: "example", Version: "1"}
}

// fold is one committed state: the cursor, the host's metadata and the
// entries. keys is sorted, for Scan.
type fold struct {
	cursor  uint64
	meta    map[string][]byte
	entries map[string]sdk.Entry
	keys    []string
	bytes   uint64 // sum of len(key)+len(value), for Stats
}

// fileName is the fold's file in the store directory; Apply writes
// fileName+".tmp" first.
const fileName = "fold.json"

// config is this store's store_config table. The host passes the fold's
// table as JSON; a key the store does not know is an error, so a typo in a
// config file is reported instead of ignored.
type config struct {
	// Sync flushes every commit to disk before Apply returns. Without it a
	// machine crash can lose recent batches; the cursor still matches the
	// data, so the host fetches them again.
	Sync bool `json:"sync"`
}

func parseConfig(data []byte) (config, error) {
	cfg := config{Sync: true}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return config{}, fmt.Errorf("example store_config: %w", err)
	}
	return cfg, nil
}

// Open loads the fold in dir, or starts an empty one if dir has none. It
// reports the cursor and metadata of the last committed batch: the host
// resumes from that cursor, so Open must never invent one. A file that does
// not decode, or whose checksum does not match, is an error; starting over
// silently would hide the loss of the fold.
func (s *Store) Open(_ context.Context, dir string, rawConfig []byte) (sdk.State, error) {
	cfg, err := parseConfig(rawConfig)
	if err != nil {
		return sdk.State{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fold != nil {
		return sdk.State{}, errors.New("example: store is already open")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sdk.State{}, fmt.Errorf("example: %w", err)
	}
	f, err := load(filepath.Join(dir, fileName))
	if err != nil {
		return sdk.State{}, fmt.Errorf("example: open %s: %w", dir, err)
	}
	s.fold, s.dir, s.sync = f, dir, cfg.Sync
	return sdk.State{Cursor: f.cursor, Meta: cloneMeta(f.meta)}, nil
}

// cloneMeta copies metadata, so callers cannot change a published fold.
func cloneMeta(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = bytes.Clone(v)
	}
	return out
}

// current returns the published fold, or sdk.ErrClosed. The sdk's server
// rejects calls on a closed store before they get here, but a store used
// in-process (as the conformance suite can) must say so itself.
func (s *Store) current() (*fold, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fold == nil {
		return nil, sdk.ErrClosed
	}
	return s.fold, nil
}

// Apply commits a batch: every mutation, the cursor and the metadata, or
// none of them. It builds the next fold beside the current one, makes it
// durable, and only then publishes it to readers. An error at any point
// leaves the current fold, on disk and in memory, as it was.
func (s *Store) Apply(ctx context.Context, b *sdk.Batch) error {
	s.applying.Lock()
	defer s.applying.Unlock()
	cur, err := s.current()
	if err != nil {
		return err
	}
	next := cur.with(b)
	// A cancelled call may give up until the commit; after the rename it is
	// done, whatever the caller thinks.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := write(s.dir, next, s.sync); err != nil {
		return fmt.Errorf("example: commit batch up to cursor %d: %w", b.Cursor, err)
	}
	s.mu.Lock()
	s.fold = next
	s.mu.Unlock()
	return nil
}

// with returns the fold after batch b. Mutations apply in order, so when a
// batch touches a key twice the last mutation wins. Deleting an absent key
// is not an error, and a put with an empty value is a key like any other.
func (f *fold) with(b *sdk.Batch) *fold {
	next := &fold{cursor: b.Cursor, meta: cloneMeta(f.meta), entries: make(map[string]sdk.Entry, len(f.entries)+len(b.Mutations))}
	for k, e := range f.entries {
		next.entries[k] = e
	}
	for _, m := range b.Mutations {
		switch m.Op {
		case sdk.OpPut:
			// Copy: the caller may reuse its buffers after Apply returns.
			next.entries[string(m.Key)] = sdk.Entry{Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value), Revision: m.Revision}
		case sdk.OpDelete:
			delete(next.entries, string(m.Key))
		}
	}
	// Metadata is upserted: names the batch does not mention keep their
	// value.
	for k, v := range b.Meta {
		next.meta[k] = bytes.Clone(v)
	}
	next.index()
	return next
}

// index sorts the keys and totals the bytes.
func (f *fold) index() {
	f.keys = make([]string, 0, len(f.entries))
	f.bytes = 0
	for k, e := range f.entries {
		f.keys = append(f.keys, k)
		f.bytes += uint64(len(e.Key) + len(e.Value))
	}
	// Go compares strings byte by byte, unsigned: the order Scan promises.
	slices.Sort(f.keys)
}

// Get returns the entry for key, or sdk.ErrNotFound: the sentinel, so the
// host (on the other side of a process boundary) can tell "absent" from a
// failure.
func (s *Store) Get(_ context.Context, key []byte) (sdk.Entry, error) {
	f, err := s.current()
	if err != nil {
		return sdk.Entry{}, err
	}
	e, ok := f.entries[string(key)]
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	// A copy: the caller may change it, and the fold must not change.
	return sdk.Entry{Key: key, Value: bytes.Clone(e.Value), Revision: e.Revision}, nil
}

// Scan calls fn for the entries in r in ascending key order. Every bound of
// the range applies at once; Limit counts the entries passed to fn; fn's
// error ends the scan and is returned as is.
func (s *Store) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	f, err := s.current()
	if err != nil {
		return err
	}
	// Start at the first key that can match: the greatest of the lower
	// bounds (the first key after After is After plus a zero byte), found
	// by binary search in the sorted keys.
	lower := string(r.Prefix)
	if string(r.Start) > lower {
		lower = string(r.Start)
	}
	if len(r.After) > 0 && string(r.After)+"\x00" > lower {
		lower = string(r.After) + "\x00"
	}
	i := sort.SearchStrings(f.keys, lower)
	for n := 0; i < len(f.keys) && (r.Limit == 0 || n < r.Limit); i++ {
		k := f.keys[i]
		if len(r.End) > 0 && k >= string(r.End) {
			break
		}
		if !bytes.HasPrefix([]byte(k), r.Prefix) {
			break // keys are sorted: past the prefix, nothing more matches
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		e := f.entries[k]
		if r.KeysOnly {
			e.Value = nil
		}
		if err := fn(e); err != nil {
			return err
		}
		n++
	}
	return nil
}

// Stats reports the live keys, their bytes, and the size of the file.
func (s *Store) Stats(context.Context) (sdk.Stats, error) {
	f, err := s.current()
	if err != nil {
		return sdk.Stats{}, err
	}
	st := sdk.Stats{Keys: uint64(len(f.entries)), Bytes: f.bytes}
	if info, err := os.Stat(filepath.Join(s.dir, fileName)); err == nil {
		st.DiskBytes = uint64(info.Size())
	}
	return st, nil
}

// Close releases the store. Every commit is already on disk, so there is
// nothing to flush. Calls after Close fail with sdk.ErrClosed.
func (s *Store) Close(context.Context) error {
	s.applying.Lock()
	defer s.applying.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fold == nil {
		return sdk.ErrClosed
	}
	s.fold = nil
	return nil
}

// The file format: JSON, with a SHA-256 checksum of the fold so that a
// damaged file is refused instead of read as a different fold. JSON strings
// must be UTF-8, so keys, values and metadata names are byte slices (base64
// in the file).
type fileJSON struct {
	SHA256 string          `json:"sha256"`
	Fold   json.RawMessage `json:"fold"`
}

type foldJSON struct {
	Cursor  uint64      `json:"cursor"`
	Meta    []metaJSON  `json:"meta"`
	Entries []entryJSON `json:"entries"`
}

type metaJSON struct {
	Name  []byte `json:"name"`
	Value []byte `json:"value"`
}

type entryJSON struct {
	Key      []byte `json:"key"`
	Value    []byte `json:"value"`
	Revision uint64 `json:"revision"`
}

// write makes f the durable fold in dir: write a temporary file, flush it,
// rename it over the fold's file, and flush the directory so the rename
// itself survives a power cut.
func write(dir string, f *fold, doSync bool) error {
	fj := foldJSON{Cursor: f.cursor, Entries: make([]entryJSON, 0, len(f.keys))}
	for _, k := range slices.Sorted(maps.Keys(f.meta)) {
		fj.Meta = append(fj.Meta, metaJSON{Name: []byte(k), Value: f.meta[k]})
	}
	for _, k := range f.keys {
		e := f.entries[k]
		fj.Entries = append(fj.Entries, entryJSON{Key: e.Key, Value: e.Value, Revision: e.Revision})
	}
	body, err := json.Marshal(fj)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	data, err := json.Marshal(fileJSON{SHA256: hex.EncodeToString(sum[:]), Fold: body})
	if err != nil {
		return err
	}
	path := filepath.Join(dir, fileName)
	tmp := path + ".tmp"
	if err := writeFile(tmp, data, doSync); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if !doSync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeFile(path string, data []byte, doSync bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if doSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// load reads the fold's file; a missing file is a new, empty fold.
func load(path string) (*fold, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		f := &fold{meta: map[string][]byte{}, entries: map[string]sdk.Entry{}}
		f.index()
		return f, nil
	}
	if err != nil {
		return nil, err
	}
	var file fileJSON
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%s is not a fold file: %w", path, err)
	}
	sum := sha256.Sum256(file.Fold)
	if hex.EncodeToString(sum[:]) != file.SHA256 {
		return nil, fmt.Errorf("%s is damaged: its checksum does not match", path)
	}
	var fj foldJSON
	if err := json.Unmarshal(file.Fold, &fj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &fold{cursor: fj.Cursor, meta: map[string][]byte{}, entries: make(map[string]sdk.Entry, len(fj.Entries))}
	for _, m := range fj.Meta {
		f.meta[string(m.Name)] = m.Value
	}
	for _, e := range fj.Entries {
		f.entries[string(e.Key)] = sdk.Entry{Key: e.Key, Value: e.Value, Revision: e.Revision}
	}
	f.index()
	return f, nil
}
