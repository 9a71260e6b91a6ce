package sdk

import (
	"context"
	"errors"
	"strconv"
)

// Sentinel errors a backend returns, and the host branches on. They survive
// the process boundary.
var (
	// ErrNotFound is returned by Get for a key the store does not hold.
	ErrNotFound = errors.New("key not found")
	// ErrClosed is returned by every call on a store that is not open:
	// before Open, and after Close.
	ErrClosed = errors.New("store is not open")
)

// Op is the kind of a mutation.
type Op uint8

const (
	// OpPut sets a key to a value (which may be empty).
	OpPut Op = 1
	// OpDelete removes a key. Deleting an absent key is not an error.
	OpDelete Op = 2
	// OpPurge is a delete that also removed the key's history from the
	// stream. The host keeps it apart only for transforms, which may tell
	// the two apart; a store is never sent one (the host sends it as
	// OpDelete).
	OpPurge Op = 3
)

// String returns "put", "delete" or "purge".
func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpPurge:
		return "purge"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Mutation is one change to the fold. The host carries every update in
// this one shape, from the stream through its transforms to Apply.
type Mutation struct {
	// Op is OpPut or OpDelete in a Batch.
	Op    Op
	Key   []byte
	Value []byte
	// Revision is the stream sequence that produced the put; stored with the
	// value and returned by Get and Scan. Zero for deletes the host
	// synthesizes during a reconcile.
	Revision uint64
}

// Batch is the unit of atomicity: every mutation, the cursor and the
// metadata are committed together or not at all.
type Batch struct {
	Mutations []Mutation
	// Cursor is the stream sequence this batch brings the fold up to. It may
	// equal the previous cursor (a batch of synthesized deletes).
	Cursor uint64
	// Meta is upserted into the store's metadata. Keys not mentioned keep
	// their value. Nil means no change.
	Meta map[string][]byte
}

// State is what a store reports when opened: the cursor and metadata of the
// last committed batch. A new store reports zero and an empty map.
type State struct {
	Cursor uint64
	Meta   map[string][]byte
	// Loading reports a bulk load that was begun and not yet ended (see
	// Loader); the host ends it once it has caught up.
	Loading bool
}

// Entry is one key of the fold.
type Entry struct {
	Key      []byte
	Value    []byte
	Revision uint64
}

// Range selects keys for Scan. Every set bound applies; entries come in
// ascending byte order of key.
type Range struct {
	// Prefix keeps keys that start with it.
	Prefix []byte
	// Start keeps keys >= Start; End keeps keys < End.
	Start, End []byte
	// After keeps keys > After: the last key of the previous page.
	After []byte
	// Limit stops after that many entries; 0 means no limit.
	Limit int
	// KeysOnly lets the store leave Value nil (revisions are still required).
	KeysOnly bool
}

// Stats describes the contents of a store.
type Stats struct {
	Keys      uint64
	Bytes     uint64 // keys plus values, as stored by the host
	DiskBytes uint64 // on-disk footprint, when the backend knows it
}

// Store is a durable, ordered key-value fold with a cursor. Implementations
// are served by Serve. A store may implement the optional interfaces
// Compacter, Loader, Snapshotter, Describer and LoggerSetter; implementing
// one is what declares the capability, there is nothing else to declare.
type Store interface {
	// Open opens the store kept in dir, creating it if dir is empty or
	// missing. config is the fold's store_config table as JSON ("{}" when
	// absent). A store reports unknown config keys as an error.
	Open(ctx context.Context, dir string, config []byte) (State, error)
	// Apply commits b atomically (see Batch). A store that returns an error
	// must not have committed any part of b. The batch's keys and values
	// are the store's to read until Apply returns; one that keeps any
	// afterwards copies it (across the plugin boundary they share one
	// buffer, which a kept slice would keep whole).
	Apply(ctx context.Context, b *Batch) error
	// Get returns the entry for key, or ErrNotFound.
	Get(ctx context.Context, key []byte) (Entry, error)
	// Scan calls fn for each entry in r, in ascending key order, and stops
	// early with fn's error. Entries passed to fn may be reused after fn
	// returns.
	Scan(ctx context.Context, r Range, fn func(Entry) error) error
	// Stats reports the number of keys and bytes held.
	Stats(ctx context.Context) (Stats, error)
	// Close flushes and releases the store. Every later call fails with
	// ErrClosed.
	Close(ctx context.Context) error
}

// Compacter is implemented by stores that can settle their files on
// request. Compact must keep the store's contents, cursor and metadata
// exactly (the conformance suite checks it); the host does not call it on
// its own.
type Compacter interface {
	Compact(ctx context.Context) error
}

// Loader is implemented by stores that fill an empty fold faster when they
// know a bulk load is under way.
//
// The host calls BeginLoad on a store that holds nothing (cursor 0, no
// keys) before it re-lists a bucket into it, and EndLoad once it has caught
// up, before it reads from the store or publishes it to readers. Between the
// two:
//   - Every batch is atomic with its cursor, as always, but need not be
//     durable when Apply returns: the generation being loaded is read by
//     nobody, so a store may keep the load's batches from disk until
//     EndLoad. A crash may then lose the latest batches of the load, newest
//     first and each whole: Open reports the cursor of the last batch kept,
//     with exactly its data, and the host re-applies from there. EndLoad
//     makes the whole load durable before it returns.
//   - A key may be put many times and deleted, since a re-list overlaps live
//     writes; the last mutation wins, as always.
//   - Get, Scan and Stats stay correct but may be slow. They do not end the
//     load: a read never changes the store.
//
// A load outlives Close and crashes: Open reports State.Loading until
// EndLoad has returned. BeginLoad on a store that holds keys or a cursor
// fails; EndLoad on a store that is not loading does nothing. EndLoad, like
// Apply, is atomic: after a crash the store is either still loading or done.
type Loader interface {
	BeginLoad(ctx context.Context) error
	EndLoad(ctx context.Context) error
}

// Describer is implemented by stores that name themselves: the host logs
// the name and version and shows them in a fold's status.
type Describer interface {
	Describe() Info
}

// Info describes a store.
type Info struct {
	Name    string
	Version string
}

// Snapshotter is implemented by stores that can hold a consistent read view
// while Apply goes on: the host exports a live fold through one. A store
// without it is exported with its applies paused for as long as the export
// reads.
type Snapshotter interface {
	// Snapshot opens a view of the store at its last committed batch.
	// Applies committed after it returns are not seen by the view; one
	// that commits while it runs is in the view whole or not at all, as
	// for any read. A store may hold several views at once; each must be
	// closed. Closing the store closes its views: later calls on them fail
	// with ErrClosed.
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Snapshot is a read-only view of a store at one committed batch. Its
// methods may be called concurrently with the store's Apply (and with other
// views' methods), but not with each other. Serve runs a plugin's calls on
// one view one at a time, and never while the store closes.
type Snapshot interface {
	// State is the cursor and metadata of the batch the view is at
	// (Loading is always false: a store in a bulk load may refuse to
	// open a view).
	State() State
	// Scan is Store.Scan, over the view: the same Range, order and
	// entries, as of the view's batch.
	Scan(ctx context.Context, r Range, fn func(Entry) error) error
	// Close releases the view. Closing it twice does nothing.
	Close() error
}
