package reconcile

import (
	"maps"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/testenv"
	"pgregory.net/rapid"
)

type rev struct {
	value string
	rev   uint64
}

// state folds ops[:n] (value "" deletes): what the bucket held at sequence n.
func state(ops []rev, keys []string, n int) map[string]rev {
	out := map[string]rev{}
	for i := range n {
		k := keys[i]
		if ops[i].value == "" {
			delete(out, k)
		} else {
			out[k] = ops[i]
		}
	}
	return out
}

// checkRepairOrder: a fold at cursor c, damaged in ways replay cannot show,
// is repaired from a listing taken later, with refetches later still, while
// the bucket keeps changing (keys deleted and recreated); then the watch
// replays everything above the cursor. The fold must end equal to the
// bucket, whatever the timing.
func checkRepairOrder(t *rapid.T, plan func(Difference, uint64) Action) {
	names := []string{"a", "b", "c", "d"}
	n := rapid.IntRange(1, 30).Draw(t, "ops")
	ops := make([]rev, n)
	keys := make([]string, n)
	for i := range n {
		keys[i] = rapid.SampledFrom(names).Draw(t, "key")
		v := rapid.SampledFrom([]string{"", "x", "y"}).Draw(t, "value")
		ops[i] = rev{value: v, rev: uint64(i + 1)}
	}
	cursor := rapid.IntRange(0, n).Draw(t, "cursor")
	fold := state(ops, keys, cursor)
	// Damage: a stale key that was deleted (its marker lost), a key lost,
	// a key at a wrong revision.
	for _, k := range names {
		switch rapid.IntRange(0, 4).Draw(t, "damage "+k) {
		case 1:
			// A key the bucket deleted while the fold missed the marker.
			// (A wrong value at the right revision is out of reach: the
			// listing carries revisions, not values.)
			if _, ok := fold[k]; !ok {
				fold[k] = rev{value: "stale", rev: uint64(rapid.IntRange(0, cursor).Draw(t, "stale rev"))}
			}
		case 2:
			delete(fold, k)
		case 3:
			if r, ok := fold[k]; ok {
				fold[k] = rev{value: "old", rev: r.rev - min(r.rev, 1)}
			}
		}
	}
	listedAt := rapid.IntRange(cursor, n).Draw(t, "listed at")
	listing := state(ops, keys, listedAt)
	var diffs []Difference
	for k, f := range fold {
		if b, ok := listing[k]; !ok {
			diffs = append(diffs, Difference{Kind: Stale, Key: k, FoldRev: f.rev})
		} else if b.rev != f.rev {
			diffs = append(diffs, Difference{Kind: Changed, Key: k, FoldRev: f.rev, BucketRev: b.rev})
		}
	}
	for k, b := range listing {
		if _, ok := fold[k]; !ok {
			diffs = append(diffs, Difference{Kind: Missing, Key: k, BucketRev: b.rev})
		}
	}
	for _, d := range diffs {
		switch plan(d, uint64(cursor)) {
		case Delete:
			delete(fold, d.Key)
		case Refetch:
			// The refetch reads the bucket as it is when it runs, later
			// than the listing, and applies only what the cursor covers.
			now := state(ops, keys, rapid.IntRange(listedAt, n).Draw(t, "fetched at"))
			if e, ok := now[d.Key]; ok && e.rev <= uint64(cursor) {
				fold[d.Key] = e
			}
		}
	}
	// The watch, paused at the cursor during the repair, replays the rest.
	for i := cursor; i < n; i++ {
		if ops[i].value == "" {
			delete(fold, keys[i])
		} else {
			fold[keys[i]] = ops[i]
		}
	}
	if want := state(ops, keys, n); !maps.Equal(fold, want) {
		t.Fatalf("after repair and replay the fold is %v, the bucket %v", fold, want)
	}
}

func TestRepairOrderModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkRepairOrder(t, Plan) })
}

func TestRepairOrderModelCatchesMutations(t *testing.T) {
	for name, broken := range map[string]func(Difference, uint64) Action{
		"stale-left": func(d Difference, c uint64) Action {
			if d.Kind == Stale {
				return Leave
			}
			return Plan(d, c)
		},
		"changed-deleted": func(d Difference, c uint64) Action {
			if d.Kind == Changed {
				return Delete
			}
			return Plan(d, c)
		},
		"missing-left": func(d Difference, c uint64) Action {
			if d.Kind == Missing {
				return Leave
			}
			return Plan(d, c)
		},
	} {
		t.Run(name, func(t *testing.T) {
			if !testenv.RapidFails(1000, func(t *rapid.T) { checkRepairOrder(t, broken) }) {
				t.Fatalf("the repair model did not catch the %s mutation", name)
			}
		})
	}
}
