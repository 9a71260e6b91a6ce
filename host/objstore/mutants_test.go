package objstore

import (
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/testenv"
	"pgregory.net/rapid"
)

// TestModelCatchesBrokenProtocols runs the model against broken variants of
// the decisions: each must fail it, or the model proves nothing about them.
func TestModelCatchesBrokenProtocols(t *testing.T) {
	for name, broken := range map[string]func(p *protocol){
		// Moves the pointer to whatever is published last.
		"pointer-backwards": func(p *protocol) {
			p.decide = func(*Pointer, Pointer) (bool, error) { return true, nil }
		},
		// Keeps nothing for the pointer: its payload is pruned once old.
		"prune-live-payload": func(p *protocol) {
			p.retained = func(*Pointer, time.Time, time.Duration) []string { return nil }
		},
		// Keeps only what the pointer names now: a reader of the previous
		// payload loses it.
		"prune-previous": func(p *protocol) {
			p.retained = func(cur *Pointer, _ time.Time, _ time.Duration) []string {
				if cur == nil {
					return nil
				}
				return []string{cur.Object}
			}
		},
		// Prunes regardless of age: uploads are removed before their
		// exporter names them.
		"prune-ignores-grace": func(p *protocol) {
			p.prunable = func(name string, objects []objectInfo, keep []string, now time.Time, _ time.Duration) []string {
				return prunable(name, objects, keep, now, -time.Hour)
			}
		},
		// Names an upload however old: a pruner may have chosen it.
		"publish-window-ignored": func(p *protocol) {
			p.withinWindow = func(time.Duration, time.Duration) bool { return true }
		},
		// Takes a lease another holder has.
		"lease-ignored": func(p *protocol) {
			p.leaseOutcome = func(error) (bool, error) { return true, nil }
		},
		// Releases the lease whoever holds it now.
		"release-anyones-lease": func(p *protocol) {
			p.releaseRevision = func(Lease) uint64 { return 0 }
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := theProtocol
			broken(&p)
			if !testenv.RapidFails(1000, func(t *rapid.T) { runModel(t, p) }) {
				t.Fatalf("the model did not catch the %s mutation", name)
			}
		})
	}
}
