package fold

import (
	"math"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// readCache holds recently read keys of the published generation, bounded
// in bytes, coherent with its commits:
//
//   - a commit updates the entries of the keys it changes (it never adds
//     one: a write is not a read), before the cursor it reaches is visible
//     to readers, so an entry is never older than the cursor a reader saw
//     before looking it up;
//   - a miss is filled from the store only if no commit changed the key
//     while the store was being read (a fill ticket, which such a commit
//     voids); else the answer is returned but not kept, since the store may
//     have answered from before that commit.
//
// A readCache is not safe for concurrent use: its live holds the lock.
type readCache struct {
	lru   *simplelru.LRU[string, cached]
	bytes int64
	max   int64
	fills map[string]*fill

	// keepVoided keeps the fills that a commit voided: a deliberate bug,
	// which the cache model must catch (cache_model_test.go).
	keepVoided bool
}

// cached is one key as the published generation holds it: found with its
// value and revision, or absent.
type cached struct {
	value    []byte
	revision uint64
	found    bool
}

// fill is a ticket for a miss being read from the store: still valid when
// no commit changed its key since it was taken.
type fill struct {
	valid bool
	refs  int
}

// entryOverhead is what an entry costs beyond its key and value: the list
// element, the map slot and the strings' headers, roughly.
const entryOverhead = 96

func newReadCache(maxBytes int64) *readCache {
	lru, err := simplelru.NewLRU[string, cached](math.MaxInt, nil)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &readCache{lru: lru, max: maxBytes, fills: map[string]*fill{}}
}

func cost(key string, c cached) int64 { return int64(len(key)+len(c.value)) + entryOverhead }

// get returns key's entry when the cache holds it.
func (c *readCache) get(key string) (cached, bool) { return c.lru.Get(key) }

// begin takes the fill ticket of a miss of key.
func (c *readCache) begin(key string) *fill {
	t := c.fills[key]
	if t == nil {
		t = &fill{valid: true}
		c.fills[key] = t
	}
	t.refs++
	return t
}

// abort returns ticket t of key without an answer.
func (c *readCache) abort(key string, t *fill) {
	t.refs--
	if t.refs == 0 && c.fills[key] == t {
		delete(c.fills, key)
	}
}

// end returns ticket t of key with what the store answered, and keeps the
// answer when the ticket is still valid.
func (c *readCache) end(key string, t *fill, v cached) {
	c.abort(key, t)
	if !t.valid || c.lru.Contains(key) {
		return // a commit changed the key meanwhile, or set its entry
	}
	c.put(key, v)
}

// changed records that a commit changed key to v: its entry, if any, is
// updated, and the fills of key under way are voided.
func (c *readCache) changed(key []byte, v cached) {
	if t, ok := c.fills[string(key)]; ok && !c.keepVoided {
		t.valid = false
		delete(c.fills, string(key))
	}
	if c.lru.Len() == 0 {
		return
	}
	if old, ok := c.lru.Peek(string(key)); ok {
		c.bytes -= cost(string(key), old)
		c.put(string(key), v)
	}
}

func (c *readCache) put(key string, v cached) {
	n := cost(key, v)
	if n > c.max {
		c.lru.Remove(key)
		return
	}
	c.lru.Add(key, v)
	c.bytes += n
	for c.bytes > c.max {
		k, old, ok := c.lru.RemoveOldest()
		if !ok {
			break
		}
		c.bytes -= cost(k, old)
	}
}
