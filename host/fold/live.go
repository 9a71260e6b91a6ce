package fold

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
)

// Read path defaults, in bytes (Config.ReadCache, Config.ChangeBuffer).
const (
	DefaultReadCache    = 64 << 20
	DefaultChangeBuffer = 16 << 20
)

// ErrReset is wrapped by the errors of a change subscription that can no
// longer be continued without a gap: the generation it follows was
// replaced, its position is older than the changes held, or it is ahead of
// the fold. The subscriber reads the fold again and subscribes at the
// position of that read.
var ErrReset = errors.New("changes reset")

// Position is where a read or a change stream stands: a generation of the
// fold and a cursor of it. A read at a Position reflects every commit up
// to Cursor (perhaps a later one too).
type Position struct {
	Generation int
	Cursor     uint64
}

func (p Position) String() string { return fmt.Sprintf("%d.%d", p.Generation, p.Cursor) }

// live is what readers of the published generation share: the read cache,
// the feed of recent changes, and the cursor they reflect, which moves
// only after both took a commit in. It belongs to one generation object;
// a publish, or a store restarted at another cursor, replaces it, and the
// subscribers of the old one are reset with the reason.
type live struct {
	g        *generation
	cursor   uint64
	advanced chan struct{} // closed when the cursor moves or the live ends
	ended    error         // why it was replaced; nil while current

	cache *readCache // nil: no cache
	feed  feed
}

// refreshLive makes f.live belong to pub, the published generation (nil
// when there is none). A reopened store of the same generation at the
// cursor the live reflects keeps it; anything else starts a new one.
func (f *Fold) refreshLive(pub *generation) {
	f.liveMu.Lock()
	defer f.liveMu.Unlock()
	f.liveLocked(pub)
}

func (f *Fold) liveLocked(pub *generation) *live {
	l := f.live
	if l != nil && l.g == pub {
		return l
	}
	var why string
	switch {
	case l == nil:
	case pub == nil:
		why = "the fold stopped"
	case l.g.n != pub.n:
		why = fmt.Sprintf("generation %d was replaced by generation %d", l.g.n, pub.n)
	case pub.committedCursor() != l.cursor:
		why = fmt.Sprintf("the store of generation %d restarted at cursor %d, not at %d", pub.n, pub.committedCursor(), l.cursor)
	default:
		l.g = pub // the same store, reopened where it was
		return l
	}
	if l != nil {
		l.ended = fmt.Errorf("%w: %s", ErrReset, why)
		close(l.advanced)
		f.cacheBytes.Set(0)
	}
	f.live = nil
	if pub == nil {
		return nil
	}
	cursor := pub.committedCursor()
	nl := &live{g: pub, cursor: cursor, advanced: make(chan struct{}),
		feed: feed{base: cursor, max: f.cfg.ChangeBuffer}}
	if f.cfg.ReadCache > 0 {
		nl.cache = newReadCache(f.cfg.ReadCache)
	}
	f.live = nl
	return nl
}

// liveCommitted takes in a commit of b to g before its cursor is recorded:
// when g is the published generation, its changes update the cache and
// join the feed, and then the live's cursor moves.
func (f *Fold) liveCommitted(g *generation, b *batch) {
	f.liveMu.Lock()
	defer f.liveMu.Unlock()
	if g != f.gens.published() {
		return
	}
	l := f.liveLocked(g)
	if l.cache != nil || l.feed.max > 0 {
		cs := changesOf(b.muts)
		for i := range cs {
			if l.cache != nil {
				l.cache.changed(cs[i].Key, cached{value: cs[i].Value, revision: cs[i].Revision, found: cs[i].Op == sdk.OpPut})
			}
		}
		if l.feed.max > 0 {
			l.feed.add(cs)
		}
		if l.cache != nil {
			f.cacheBytes.Set(float64(l.cache.bytes))
		}
	}
	if b.cursor > l.cursor {
		l.cursor = b.cursor
		close(l.advanced)
		l.advanced = make(chan struct{})
	}
}

// changesOf copies the store's mutations of a batch into Changes, all in
// one allocation: the batch's own bytes are reused once it is committed.
func changesOf(muts []sdk.Mutation) []Change {
	n := 0
	for i := range muts {
		n += len(muts[i].Key) + len(muts[i].Value)
	}
	buf := make([]byte, 0, n)
	cs := make([]Change, len(muts))
	for i, m := range muts {
		at := len(buf)
		buf = append(buf, m.Key...)
		c := Change{Op: sdk.OpPut, Key: buf[at:len(buf):len(buf)], Revision: m.Revision}
		if m.Op == sdk.OpPut {
			at = len(buf)
			buf = append(buf, m.Value...)
			c.Value = buf[at:len(buf):len(buf)]
		} else {
			c.Op = sdk.OpDelete
		}
		cs[i] = c
	}
	return cs
}

// current returns the live of the published generation, or ErrNotReady.
func (f *Fold) current() (*live, error) {
	pub := f.gens.published()
	if pub == nil {
		return nil, ErrNotReady
	}
	if pub.h.Exited() {
		return nil, exitedError(pub)
	}
	l := f.liveLocked(pub)
	if l == nil {
		return nil, ErrNotReady
	}
	return l, nil
}

// Position returns where a read made now stands.
func (f *Fold) Position() (Position, error) {
	f.liveMu.Lock()
	defer f.liveMu.Unlock()
	l, err := f.current()
	if err != nil {
		return Position{}, err
	}
	return Position{Generation: l.g.n, Cursor: l.cursor}, nil
}

// WaitFor waits until the published generation has committed cursor, and
// returns the position then. When ctx ends first, it returns the position
// reached with an error wrapping ctx's.
func (f *Fold) WaitFor(ctx context.Context, cursor uint64) (Position, error) {
	for {
		f.liveMu.Lock()
		l, err := f.current()
		var at Position
		var advanced chan struct{}
		if err == nil {
			at, advanced = Position{Generation: l.g.n, Cursor: l.cursor}, l.advanced
		}
		f.liveMu.Unlock()
		if err != nil || at.Cursor >= cursor {
			return at, err
		}
		select {
		case <-ctx.Done():
			return at, fmt.Errorf("cursor %d not reached (at %d): %w", cursor, at.Cursor, ctx.Err())
		case <-advanced:
		}
	}
}

// storeGet is h.Get, bounded by the read timeout (storeRead).
func (f *Fold) storeGet(ctx context.Context, h Handle, key []byte) (e sdk.Entry, err error) {
	err = f.storeRead(ctx, func(ctx context.Context) error {
		e, err = h.Get(ctx, key)
		return err
	})
	return e, err
}

// Lookup reads one key of the published generation, through the read
// cache, and returns it with the position it is at least as new as. An
// absent key is sdk.ErrNotFound. The entry's value may be the cache's own:
// callers must not modify it.
func (f *Fold) Lookup(ctx context.Context, key []byte) (sdk.Entry, Position, error) {
	f.liveMu.Lock()
	l, err := f.current()
	if err != nil {
		f.liveMu.Unlock()
		return sdk.Entry{}, Position{}, err
	}
	at, h := Position{Generation: l.g.n, Cursor: l.cursor}, l.g.h
	if l.cache == nil {
		f.liveMu.Unlock()
		e, err := f.storeGet(ctx, h, key)
		return e, at, readError(err)
	}
	if c, ok := l.cache.get(string(key)); ok {
		f.liveMu.Unlock()
		f.hits.Inc()
		if !c.found {
			return sdk.Entry{}, at, sdk.ErrNotFound
		}
		return sdk.Entry{Key: key, Value: c.value, Revision: c.revision}, at, nil
	}
	t := l.cache.begin(string(key))
	f.liveMu.Unlock()
	f.misses.Inc()
	e, err := f.storeGet(ctx, h, key)
	found := err == nil
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		f.liveMu.Lock()
		l.cache.abort(string(key), t) // an error is not an answer to keep
		f.liveMu.Unlock()
		return e, at, readError(err)
	}
	f.liveMu.Lock()
	if l == f.live {
		l.cache.end(string(key), t, cached{value: e.Value, revision: e.Revision, found: found})
		f.cacheBytes.Set(float64(l.cache.bytes))
	}
	f.liveMu.Unlock()
	if !found {
		return sdk.Entry{}, at, sdk.ErrNotFound
	}
	return e, at, nil
}

// Changes is a subscription to the changes the fold commits to its
// published generation, from a position on (Fold.Watch).
type Changes struct {
	f      *Fold
	l      *live
	pos    uint64 // absolute index in l's feed
	at     uint64 // the cursor delivered up to
	prefix []byte
}

// Watch subscribes to the changes after position from, of the keys that
// start with prefix. A zero from means the current position (no history).
// It fails with an error wrapping ErrReset when from cannot be continued
// without a gap: another generation, a cursor ahead of the fold's, or
// older than the changes the fold still holds.
func (f *Fold) Watch(from Position, prefix []byte) (*Changes, error) {
	f.liveMu.Lock()
	defer f.liveMu.Unlock()
	l, err := f.current()
	if err != nil {
		return nil, err
	}
	c := &Changes{f: f, l: l, prefix: prefix}
	if from == (Position{}) {
		c.pos, c.at = l.feed.end(), l.cursor
		f.cfg.Metrics.watchers.WithLabelValues(f.cfg.Name).Inc()
		return c, nil
	}
	switch {
	case from.Generation != l.g.n:
		return nil, fmt.Errorf("%w: position %s is of generation %d; the fold serves generation %d", ErrReset, from, from.Generation, l.g.n)
	case from.Cursor > l.cursor:
		return nil, fmt.Errorf("%w: position %s is ahead of the fold's cursor %d", ErrReset, from, l.cursor)
	}
	pos, ok := l.feed.after(from.Cursor)
	if !ok {
		return nil, fmt.Errorf("%w: the changes after cursor %d are no longer held (the oldest held follow %d)", ErrReset, from.Cursor, l.feed.base)
	}
	c.pos, c.at = pos, from.Cursor
	f.cfg.Metrics.watchers.WithLabelValues(f.cfg.Name).Inc()
	return c, nil
}

// Position is where the subscription stands: every change up to it was
// delivered (or came before the subscription started).
func (c *Changes) Position() Position {
	c.f.liveMu.Lock()
	defer c.f.liveMu.Unlock()
	return Position{Generation: c.l.g.n, Cursor: c.at}
}

// Close ends the subscription.
func (c *Changes) Close() { c.f.cfg.Metrics.watchers.WithLabelValues(c.f.cfg.Name).Dec() }

// maxChanges bounds the changes Next examines in one call.
const maxChanges = 1024

// Next returns the next changes, up to 1024 examined, and the position
// they bring the subscriber to: every change up to its cursor was
// delivered. With none to deliver, it waits up to wait for one, and then
// returns none with the position reached (a bookmark: the fold went on,
// with no change under the prefix). An error wrapping ErrReset ends the
// subscription: the subscriber fell behind the changes held, or the
// generation was replaced.
func (c *Changes) Next(ctx context.Context, wait time.Duration) ([]Change, Position, error) {
	var timeout <-chan time.Time
	for {
		c.f.liveMu.Lock()
		l := c.l
		if l.ended != nil {
			c.f.liveMu.Unlock()
			return nil, Position{}, l.ended
		}
		out, next, rev, ok := l.feed.read(c.pos, c.prefix, maxChanges)
		if !ok {
			c.f.liveMu.Unlock()
			return nil, Position{}, fmt.Errorf("%w: the subscriber fell behind: the changes after cursor %d are no longer held (the oldest held follow %d)",
				ErrReset, c.at, l.feed.base)
		}
		c.pos = next
		switch {
		case next == l.feed.end():
			c.at = l.cursor // the changes up to the cursor are all in the feed
		case rev > 0:
			c.at = rev
		}
		atEnd := next == l.feed.end()
		at, advanced := Position{Generation: l.g.n, Cursor: c.at}, l.advanced
		c.f.liveMu.Unlock()
		if len(out) > 0 {
			return out, at, nil
		}
		if !atEnd {
			continue // examined changes that did not match: go on
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ctx.Done():
			return nil, at, ctx.Err()
		case <-timeout:
			return nil, at, nil
		case <-advanced:
		}
	}
}
