package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// The key layout; see the package documentation.
var (
	formatKey   = []byte("\x00s/format")
	cursorKey   = []byte("\x00s/cursor")
	statsKey    = []byte("\x00s/stats")
	loadingKey  = []byte("\x00s/loading")
	countingKey = []byte("\x00s/counting")
	metaPrefix  = []byte("\x00m/")
	metaEnd     = []byte("\x00m0") // '0' follows '/': the first key past every meta key
	dataPrefix  = []byte("\x01d/")
	dataEnd     = []byte("\x01d0")
)

// layoutVersion is the value of formatKey this code reads and writes.
const layoutVersion = "1"

func dataKey(key []byte) []byte {
	return append(append(make([]byte, 0, len(dataPrefix)+len(key)), dataPrefix...), key...)
}

func metaKey(name string) []byte {
	return append(append(make([]byte, 0, len(metaPrefix)+len(name)), metaPrefix...), name...)
}

// putData adds a put of a data record to wb: the data key, and a value of
// the revision followed by the user value. Writing in place saves two
// copies per entry.
func putData(wb *pebble.Batch, key []byte, revision uint64, value []byte) {
	op := wb.SetDeferred(len(dataPrefix)+len(key), 8+len(value))
	copy(op.Key[copy(op.Key, dataPrefix):], key)
	binary.BigEndian.PutUint64(op.Value, revision)
	copy(op.Value[8:], value)
	_ = op.Finish() // fails only for an indexed batch
}

// deleteData adds a delete of key's data record to wb.
func deleteData(wb *pebble.Batch, key []byte) {
	op := wb.DeleteDeferred(len(dataPrefix) + len(key))
	copy(op.Key[copy(op.Key, dataPrefix):], key)
	_ = op.Finish()
}

var errShortRecord = errors.New("data record shorter than its 8-byte revision")

// decodeValue splits a data record; value aliases rec.
func decodeValue(rec []byte) (revision uint64, value []byte, err error) {
	if len(rec) < 8 {
		return 0, nil, errShortRecord
	}
	return binary.BigEndian.Uint64(rec), rec[8:], nil
}

func encodeUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

func decodeUint64(what string, b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%s record is %d bytes, want 8", what, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// counts is the stats record: live keys and their key+value bytes.
type counts struct {
	keys, bytes uint64
}

// plus is c + d - base, in modular arithmetic: the counts of a store whose
// count c was made at a point where its stats record held base, and holds d
// now.
func (c counts) plus(d, base counts) counts {
	return counts{keys: c.keys + d.keys - base.keys, bytes: c.bytes + d.bytes - base.bytes}
}

func (c counts) encode() []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, c.keys), c.bytes)
}

func decodeCounts(b []byte) (counts, error) {
	if len(b) != 16 {
		return counts{}, fmt.Errorf("stats record is %d bytes, want 16", len(b))
	}
	return counts{keys: binary.BigEndian.Uint64(b), bytes: binary.BigEndian.Uint64(b[8:])}, nil
}

// bounds translates a scan range into pebble iterator bounds over the data
// keys. ok is false when the range is empty.
func bounds(prefix, start, end, after []byte) (lower, upper []byte, ok bool) {
	lo := prefix
	if bytes.Compare(start, lo) > 0 {
		lo = start
	}
	if after != nil {
		// The smallest key greater than after is after+"\x00".
		succ := append(append(make([]byte, 0, len(after)+1), after...), 0)
		if bytes.Compare(succ, lo) > 0 {
			lo = succ
		}
	}
	var hi []byte // nil: no upper bound
	if len(prefix) > 0 {
		hi = prefixEnd(prefix)
	}
	if len(end) > 0 && (hi == nil || bytes.Compare(end, hi) < 0) {
		hi = end
	}
	if hi != nil && bytes.Compare(lo, hi) >= 0 {
		return nil, nil, false
	}
	lower = dataKey(lo)
	if hi == nil {
		return lower, dataEnd, true
	}
	return lower, dataKey(hi), true
}

// prefixEnd is the first key past every key with prefix p, or nil if there
// is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
