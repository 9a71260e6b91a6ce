package objstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors. Errors of this package wrap one of them, or an error of NATS, the
// file system or the artifact package.
var (
	// ErrNoArtifact: the series has no pointer, so nothing was published.
	ErrNoArtifact = errors.New("objstore: no artifact published")
	// ErrSuperseded is wrapped (by a *SupersededError) when the pointer
	// already names an artifact at least as recent as the one published.
	ErrSuperseded = errors.New("objstore: superseded")
	// ErrForeign is returned when an artifact is published to a series whose
	// pointer names another bucket or stream.
	ErrForeign = errors.New("objstore: artifact of another bucket or stream")
	// ErrPublishWindow is returned when an upload became too old to be
	// named by the pointer safely (Options.PublishWindow), so a pruner may
	// already have chosen it; the export should be retried.
	ErrPublishWindow = errors.New("objstore: upload older than the publish window")
	// ErrPayloadMissing is returned by Open when the object the pointer
	// names stays absent over its retries.
	ErrPayloadMissing = errors.New("objstore: the pointer's payload is missing")
	// ErrBadPointer is wrapped when the pointer key holds no valid pointer.
	ErrBadPointer = errors.New("objstore: bad pointer")
	// ErrLeaseLost is returned by Lease.Release when the lease is no longer
	// the caller's: it expired, and possibly another holder took it.
	ErrLeaseLost = errors.New("objstore: lease lost")
)

// objectSuffix ends every payload's object name.
const objectSuffix = ".slipsnap"

// digestLen is the length of a payload digest: SHA-256 in lowercase hex.
const digestLen = 64

// Pointer is the value of a series' pointer key: which payload is the
// series' current artifact, and what it holds. Its JSON form is the key's
// value; Revision and Published come from the key's entry.
type Pointer struct {
	// Object is the payload's object name, NAME/DIGEST.slipsnap, where
	// DIGEST is the SHA-256 of the payload's bytes.
	Object string `json:"object"`
	// ContentHash, Cursor, Records and Bytes are the artifact's manifest's.
	ContentHash string `json:"content_hash"`
	Cursor      uint64 `json:"cursor"`
	Records     uint64 `json:"records"`
	Bytes       uint64 `json:"bytes"`
	// Size is the payload's length in bytes.
	Size uint64 `json:"size"`
	// Bucket, Stream and StreamCreated identify what the artifact is a
	// fold of (from its manifest).
	Bucket        string    `json:"bucket"`
	Stream        string    `json:"stream"`
	StreamCreated time.Time `json:"stream_created"`
	// Created and Producer are the manifest's: when the artifact was
	// written, and by what program.
	Created  time.Time `json:"created"`
	Producer string    `json:"producer"`
	// Exporter is Options.Exporter of the node that moved the pointer.
	Exporter string `json:"exporter"`
	// Previous is the object the pointer named before this revision, kept
	// by Prune for a grace period after the move for readers still on it.
	Previous string `json:"previous,omitempty"`

	// Revision is the pointer key's revision, and Published the server's
	// time of that revision; zero in a Pointer not read from the key.
	Revision  uint64    `json:"-"`
	Published time.Time `json:"-"`
}

// SupersededError reports an export that the pointer already moved past.
type SupersededError struct {
	Current   Pointer // the pointer, as it stays
	Attempted Pointer // the artifact that was not published
}

func (e *SupersededError) Error() string {
	c, a := e.Current, e.Attempted
	if !c.StreamCreated.Equal(a.StreamCreated) {
		return fmt.Sprintf("%v: the pointer names cursor %d of the stream created %s, this export is cursor %d of the older stream created %s",
			ErrSuperseded, c.Cursor, c.StreamCreated.UTC().Format(time.RFC3339Nano), a.Cursor, a.StreamCreated.UTC().Format(time.RFC3339Nano))
	}
	if c.Cursor == a.Cursor {
		return fmt.Sprintf("%v: the pointer names cursor %d with content %s, this export is cursor %d with other content %s",
			ErrSuperseded, c.Cursor, c.ContentHash, a.Cursor, a.ContentHash)
	}
	return fmt.Sprintf("%v: the pointer names cursor %d, this export is cursor %d", ErrSuperseded, c.Cursor, a.Cursor)
}

func (e *SupersededError) Unwrap() error { return ErrSuperseded }

// decidePointer says whether the pointer may move from cur (nil: no
// pointer yet) to next. Pointers are ordered by their stream's creation
// time, then by cursor: a recreated stream starts its cursors again, and
// its artifacts replace those of the stream it replaced. The pointer only
// moves forward: to a later stream, or to a higher cursor of the same one.
// At an equal cursor, the same content hash is already published (no move,
// no error) and another one is refused: the first published stays. A
// refusal is a *SupersededError; an artifact of another bucket or stream
// name is ErrForeign.
func decidePointer(cur *Pointer, next Pointer) (move bool, err error) {
	if cur == nil {
		return true, nil
	}
	if cur.Bucket != next.Bucket || cur.Stream != next.Stream {
		return false, fmt.Errorf("%w: the pointer names an artifact of bucket %q (stream %q), this one is of bucket %q (stream %q)",
			ErrForeign, cur.Bucket, cur.Stream, next.Bucket, next.Stream)
	}
	switch {
	case next.StreamCreated.After(cur.StreamCreated):
		return true, nil
	case next.StreamCreated.Before(cur.StreamCreated):
		return false, &SupersededError{Current: *cur, Attempted: next}
	case next.Cursor > cur.Cursor:
		return true, nil
	case next.Cursor == cur.Cursor && next.ContentHash == cur.ContentHash:
		return false, nil
	default:
		return false, &SupersededError{Current: *cur, Attempted: next}
	}
}

// withinWindow says whether an upload that started elapsed ago may still be
// named by the pointer. Prune refuses a grace shorter than the window, so
// an upload within it cannot have been chosen for deletion yet (doc.go).
func withinWindow(elapsed, window time.Duration) bool { return elapsed < window }

// removable says whether an exporter that did not move the pointer may
// delete the payload it uploaded: not when the pointer (cur, nil when
// absent) names it, now or as its previous object.
func removable(cur *Pointer, object string) bool {
	return cur == nil || (cur.Object != object && cur.Previous != object)
}

// objectName is the object name of series name's payload with the given
// digest.
func objectName(name, digest string) string { return name + "/" + digest + objectSuffix }

// isPayload says whether object is a payload's name in series name:
// NAME/DIGEST.slipsnap with DIGEST 64 lowercase hex digits.
func isPayload(name, object string) bool {
	rest, ok := strings.CutPrefix(object, name+"/")
	if !ok {
		return false
	}
	digest, ok := strings.CutSuffix(rest, objectSuffix)
	if !ok || len(digest) != digestLen {
		return false
	}
	for i := 0; i < len(digest); i++ {
		if c := digest[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func encodePointer(p Pointer) ([]byte, error) { return json.Marshal(p) }

// decodePointer parses a pointer key's value; name is the series, which
// the pointer's object must belong to.
func decodePointer(name string, b []byte) (Pointer, error) {
	var p Pointer
	if err := json.Unmarshal(b, &p); err != nil {
		return Pointer{}, fmt.Errorf("%w: %s: %v", ErrBadPointer, name, err)
	}
	switch {
	case !isPayload(name, p.Object):
		return Pointer{}, fmt.Errorf("%w: %s: object %q is not a payload of the series", ErrBadPointer, name, p.Object)
	case p.Previous != "" && !isPayload(name, p.Previous):
		return Pointer{}, fmt.Errorf("%w: %s: previous object %q is not a payload of the series", ErrBadPointer, name, p.Previous)
	case p.ContentHash == "" || p.Bucket == "" || p.Stream == "":
		return Pointer{}, fmt.Errorf("%w: %s: content hash, bucket or stream missing", ErrBadPointer, name)
	}
	return p, nil
}
