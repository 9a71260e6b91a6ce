// Package reconcile compares a fold with its bucket key by key: the live
// keys in scope and their revisions against the keys and revisions the store
// holds. The fold uses it to repair what replay cannot (delete markers that
// vanished without moving the first sequence); `slipstream verify` uses it
// read-only.
//
// Memory is bounded by the number of live keys, at 17 bytes per key: each
// live key is kept as a 64-bit hash and its revision, in a sorted slice
// sized from the consumer's pending count, plus a seen flag. Two keys whose hashes collide (odds about n²/2⁶⁵ for n keys: one in
// 10^7 at a million keys) can hide one stale key from a reconcile.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/slipstreamkv/slipstream/host/watch"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Kind is what differs about a key.
type Kind int

// The kinds of difference.
const (
	// Stale: the fold holds a key the bucket no longer has.
	Stale Kind = iota + 1
	// Missing: the bucket has a key the fold does not hold.
	Missing
	// Changed: both hold the key at different revisions.
	Changed
)

func (k Kind) String() string {
	switch k {
	case Stale:
		return "stale"
	case Missing:
		return "missing"
	case Changed:
		return "changed"
	}
	return "unknown"
}

// Difference is one key that differs.
type Difference struct {
	Kind      Kind   `json:"kind"`
	Key       string `json:"key"`
	FoldRev   uint64 `json:"fold_revision,omitempty"`
	BucketRev uint64 `json:"bucket_revision,omitempty"`
}

// Summary counts what a comparison saw.
type Summary struct {
	BucketKeys int `json:"bucket_keys"`
	FoldKeys   int `json:"fold_keys"`
	Stale      int `json:"stale"`
	Missing    int `json:"missing"`
	Changed    int `json:"changed"`
}

// Diverged reports whether any key differs.
func (s Summary) Diverged() bool { return s.Stale+s.Missing+s.Changed > 0 }

// Mapper maps a live bucket entry to the key the fold keeps it under, or
// drops it (a fold's transform chain). Nil keeps every key as it is.
type Mapper func(ctx context.Context, key string, value []byte, rev uint64) (foldKey string, keep bool, err error)

// Source is what to compare against.
type Source struct {
	JS      jetstream.JetStream
	Bucket  string
	Filters []string
	// Map, when set, is applied to each live entry; it needs values, so the
	// listing fetches them. Without it only headers travel.
	Map Mapper
}

type entry struct {
	hash, rev uint64
}

var seed = maphash.MakeSeed()

func hashKey(k []byte) uint64 { return maphash.Bytes(seed, k) }

// live streams the live keys in scope (no delete or purge markers) and
// their revisions, up to the stream position at the start of the listing.
func live(ctx context.Context, src Source, sizeHint func(n int), fn func(key string, value []byte, rev uint64) error) error {
	stream := watch.StreamName(src.Bucket)
	cons, err := src.JS.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: watch.FilterSubjects(src.Bucket, src.Filters),
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		HeadersOnly:    src.Map == nil,
		NamePrefix:     "slipstream_list_" + nuid.Next(),
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", src.Bucket, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("list %s: %w", src.Bucket, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	if sizeHint != nil {
		sizeHint(int(info.NumPending))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = src.JS.DeleteConsumer(dctx, stream, info.Name)
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("list %s: %w", src.Bucket, err)
	}
	defer it.Stop()
	prefix := "$KV." + src.Bucket + "."
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("list %s: %w", src.Bucket, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return err
		}
		if watch.Operation(msg.Headers()) == sdk.OpPut {
			if err := fn(msg.Subject()[len(prefix):], msg.Data(), md.Sequence.Stream); err != nil {
				return err
			}
		}
		if md.NumPending == 0 {
			return nil
		}
	}
}

// index is the live side of a comparison, sorted by hash.
type index struct {
	e    []entry
	seen []bool
}

func (ix *index) find(h uint64) int {
	i := sort.Search(len(ix.e), func(i int) bool { return ix.e[i].hash >= h })
	if i < len(ix.e) && ix.e[i].hash == h {
		return i
	}
	return -1
}

// Compare lists the bucket, scans the store, and calls visit for every
// difference, in fold key order for stale and changed keys, then in bucket
// order for missing ones.
func Compare(ctx context.Context, src Source, store sdk.Store, visit func(Difference) error) (Summary, error) {
	var sum Summary
	ix := &index{}
	// The consumer's pending count sizes the index exactly: no growth
	// doubling, 16 bytes per key.
	hint := func(n int) { ix.e = make([]entry, 0, n) }
	err := live(ctx, src, hint, func(key string, value []byte, rev uint64) error {
		k, keep, err := mapKey(ctx, src, key, value, rev)
		if err != nil || !keep {
			return err
		}
		ix.e = append(ix.e, entry{hash: hashKey([]byte(k)), rev: rev})
		return nil
	})
	if err != nil {
		return sum, err
	}
	slices.SortFunc(ix.e, func(a, b entry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	ix.seen = make([]bool, len(ix.e))
	sum.BucketKeys = len(ix.e)
	err = store.Scan(ctx, sdk.Range{KeysOnly: true}, func(e sdk.Entry) error {
		sum.FoldKeys++
		i := ix.find(hashKey(e.Key))
		if i < 0 {
			sum.Stale++
			return visit(Difference{Kind: Stale, Key: string(e.Key), FoldRev: e.Revision})
		}
		ix.seen[i] = true
		if ix.e[i].rev != e.Revision {
			sum.Changed++
			return visit(Difference{Kind: Changed, Key: string(e.Key), FoldRev: e.Revision, BucketRev: ix.e[i].rev})
		}
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("scan fold: %w", err)
	}
	if !slices.Contains(ix.seen, false) {
		return sum, nil
	}
	// Second pass for the keys themselves: the index holds only hashes.
	err = live(ctx, src, nil, func(key string, value []byte, rev uint64) error {
		k, keep, err := mapKey(ctx, src, key, value, rev)
		if err != nil || !keep {
			return err
		}
		if i := ix.find(hashKey([]byte(k))); i >= 0 && !ix.seen[i] {
			ix.seen[i] = true
			sum.Missing++
			return visit(Difference{Kind: Missing, Key: k, BucketRev: rev})
		}
		return nil
	})
	return sum, err
}

func mapKey(ctx context.Context, src Source, key string, value []byte, rev uint64) (string, bool, error) {
	if src.Map == nil {
		return key, true, nil
	}
	return src.Map(ctx, key, value, rev)
}

// Repair plans the mutations that bring a fold at cursor back in line with
// the bucket: stale keys are deleted; missing or changed keys whose bucket
// revision the cursor already covers are fetched again. Differences above
// the cursor are left to the watch, which will deliver them in order. It
// works only for folds without a transform chain (Source.Map nil), whose
// fold keys are the bucket's keys.
func Repair(ctx context.Context, src Source, store sdk.Store, cursor uint64, emit func(sdk.Mutation) error) (Summary, error) {
	if src.Map != nil {
		return Summary{}, errors.New("reconcile: a fold with transforms is rebuilt, not repaired")
	}
	kv, err := src.JS.KeyValue(ctx, src.Bucket)
	if err != nil {
		return Summary{}, err
	}
	return Compare(ctx, src, store, func(d Difference) error {
		switch Plan(d, cursor) {
		case Delete:
			return emit(sdk.Mutation{Op: sdk.OpDelete, Key: []byte(d.Key)})
		case Leave:
			return nil
		}
		e, err := kv.Get(ctx, d.Key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			// Deleted since the listing: the watch will deliver the delete.
			return nil
		}
		if err != nil {
			return fmt.Errorf("refetch %s: %w", d.Key, err)
		}
		if e.Revision() > cursor {
			return nil // the watch will deliver it, in order
		}
		return emit(sdk.Mutation{Op: sdk.OpPut, Key: []byte(d.Key), Value: e.Value(), Revision: e.Revision()})
	})
}

// Action is what a repair does about one difference.
type Action int

// The actions of a repair.
const (
	// Leave: the watch will deliver the key's change, in order.
	Leave Action = iota
	// Delete the key from the fold.
	Delete
	// Refetch the key's value from the bucket.
	Refetch
)

// Plan decides what a repair of a fold at cursor does about d. The watch is
// paused at the cursor while the repair runs and replays everything above
// it afterwards, so a difference whose bucket revision is above the cursor
// is left to it; a key the listing lacks is deleted (if it was recreated
// above the cursor, the replay brings it back).
func Plan(d Difference, cursor uint64) Action {
	switch {
	case d.Kind == Stale:
		return Delete
	case d.BucketRev > cursor:
		return Leave
	}
	return Refetch
}

// DefaultHorizon is how long delete markers are assumed to stay replayable
// when neither the fold nor the bucket says otherwise: the default age past
// which KeyValue.PurgeDeletes removes markers.
const DefaultHorizon = 30 * time.Minute
