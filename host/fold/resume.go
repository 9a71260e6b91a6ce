package fold

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slipstreamkv/slipstream/host/reconcile"
	"github.com/slipstreamkv/slipstream/host/watch"
)

// What a stored generation means when a session starts on it: the resume
// policy, pure so that a table can test it (resume_test.go).

// Metadata keys the host keeps in every generation, committed with the
// cursor. They say what the generation is a fold of.
const (
	MetaFormat     = "slipstream.format"
	MetaBucket     = "slipstream.bucket"
	MetaStream     = "slipstream.stream"
	MetaCreated    = "slipstream.stream_created"
	MetaScope      = "slipstream.scope"
	MetaTransforms = "slipstream.transforms"
	MetaSyncedAt   = "slipstream.synced_at"
)

// wantMeta is the metadata a generation of this fold must carry.
func (f *Fold) wantMeta(id watch.Identity) map[string][]byte {
	digest := ""
	if f.cfg.Transform != nil {
		digest = f.cfg.Transform.Digest()
	}
	return map[string][]byte{
		MetaFormat:     []byte("1"),
		MetaBucket:     []byte(f.cfg.Bucket),
		MetaStream:     []byte(id.Stream),
		MetaCreated:    []byte(id.Created.Format(time.RFC3339Nano)),
		MetaScope:      []byte(strings.Join(f.cfg.Filters, "\n")),
		MetaTransforms: []byte(digest),
	}
}

// metaChecks are the metadata a generation must share with the fold it is
// resumed as, with what a difference is called, in the order they are
// checked, and the rebuild metric's label for it.
var metaChecks = []struct{ key, what, label string }{
	{MetaFormat, "format", "config"},
	{MetaBucket, "bucket", "config"},
	{MetaStream, "stream", "identity"},
	{MetaCreated, "stream identity (bucket recreated)", "identity"},
	{MetaScope, "scope", "config"},
	{MetaTransforms, "transform chain", "config"},
}

// resumeDecision is what a session does with the generation it is to feed.
type resumeDecision struct {
	// rebuild: the generation is not a fold of what this fold wants;
	// label is the rebuild metric's reason and why says what differs.
	rebuild    bool
	label, why string
	// reconcile: the generation was last caught up longer ago than the
	// tombstone horizon, so deletes it missed may have left no marker to
	// replay; it is reconciled with the bucket before it reports ready.
	// reconcileWhy says so for the log.
	reconcile    bool
	reconcileWhy string
}

// decideResume is the resume policy for a generation whose store reported
// cursor and meta, for a fold that wants want, with tombstone horizon
// horizon (negative: never reconcile) at time now. A fresh store resumes as
// it is. Otherwise every host metadata key must match (format, bucket,
// stream, stream identity, scope, transform chain, checked in that order);
// and, independently, a store that was last caught up longer ago than the
// horizon, or whose time of it is unreadable, reconciles. One with no such
// time (it never caught up) cannot be judged and resumes.
func decideResume(cursor uint64, meta, want map[string][]byte, horizon time.Duration, now time.Time) resumeDecision {
	var d resumeDecision
	if cursor == 0 && len(meta) == 0 {
		return d // a fresh store
	}
	if len(meta[MetaImport]) > 0 {
		d.rebuild, d.label = true, "import"
		d.why = "an import into this generation did not finish"
		return d
	}
	for _, c := range metaChecks {
		if string(meta[c.key]) != string(want[c.key]) {
			d.rebuild, d.label = true, c.label
			d.why = fmt.Sprintf("%s changed (%q, was %q)", c.what, want[c.key], meta[c.key])
			break
		}
	}
	raw := meta[MetaSyncedAt]
	if horizon < 0 || cursor == 0 || len(raw) == 0 {
		return d
	}
	at, err := time.Parse(time.RFC3339Nano, string(raw))
	switch {
	case err != nil:
		d.reconcile, d.reconcileWhy = true, fmt.Sprintf("last caught-up time %q is unreadable", raw)
	case now.Sub(at) > horizon:
		d.reconcile = true
		d.reconcileWhy = fmt.Sprintf("last caught up at %s, longer ago than the tombstone horizon %v", raw, horizon)
	}
	return d
}

// tombstoneHorizon is how long delete markers of a bucket stay replayable:
// the configured horizon, or when none is (0) the default, or the bucket's
// marker TTL when that is shorter.
func tombstoneHorizon(configured, markerTTL time.Duration) time.Duration {
	if configured != 0 {
		return configured
	}
	h := reconcile.DefaultHorizon
	if markerTTL > 0 && markerTTL < h {
		h = markerTTL
	}
	return h
}

// rebuildLabel names why an error calls for a rebuild, for the metric.
func rebuildLabel(err error) string {
	switch {
	case errors.Is(err, watch.ErrCursorExpired):
		return "expired"
	case errors.Is(err, watch.ErrCursorAhead), errors.Is(err, watch.ErrIdentityChanged):
		return "identity"
	case errors.Is(err, watch.ErrCursorInvalid):
		return "invalid"
	case errors.Is(err, errRebuildToReconcile):
		return "reconcile"
	}
	return "other"
}

func metaEqual(have, want map[string][]byte) bool {
	for k, v := range want {
		if string(have[k]) != string(v) {
			return false
		}
	}
	return true
}

// errRebuildToReconcile: a fold with transforms cannot be repaired key by
// key (the listing would need every value run through the chain), so its
// reconcile is a rebuild.
var errRebuildToReconcile = errors.New("reconcile needed; a fold with transforms is rebuilt instead")

func expired(err error) bool {
	return errors.Is(err, watch.ErrCursorExpired) || errors.Is(err, watch.ErrCursorAhead) ||
		errors.Is(err, watch.ErrCursorInvalid) || errors.Is(err, watch.ErrIdentityChanged)
}
