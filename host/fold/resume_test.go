package fold

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/host/reconcile"
)

// TestDecideResume is the resume policy as a table: what each stored state
// means for a fold that wants want.
func TestDecideResume(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	want := map[string][]byte{
		MetaFormat: []byte("1"), MetaBucket: []byte("cfg"), MetaStream: []byte("KV_cfg"),
		MetaCreated: []byte("2026-01-01T00:00:00Z"), MetaScope: []byte("a.>"), MetaTransforms: []byte(""),
	}
	with := func(kv ...string) map[string][]byte {
		m := maps.Clone(want)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<absent>" {
				delete(m, kv[i])
				continue
			}
			m[kv[i]] = []byte(kv[i+1])
		}
		return m
	}
	synced := func(ago time.Duration) string { return now.Add(-ago).Format(time.RFC3339Nano) }
	day := 24 * time.Hour
	cases := []struct {
		name      string
		cursor    uint64
		meta      map[string][]byte
		horizon   time.Duration
		rebuild   string // the metric label, "" for none
		why       string // part of the reason
		reconcile bool
	}{
		{name: "fresh store", cursor: 0, meta: map[string][]byte{}, horizon: day},
		{name: "fresh store, nil meta", cursor: 0, meta: nil, horizon: day},
		{name: "same fold, never caught up", cursor: 10, meta: want, horizon: day},
		{name: "same fold, caught up recently", cursor: 10, meta: with(MetaSyncedAt, synced(time.Hour)), horizon: day},
		{name: "same fold, away past the horizon", cursor: 10, meta: with(MetaSyncedAt, synced(2*day)), horizon: day, reconcile: true},
		{name: "same fold, away exactly the horizon", cursor: 10, meta: with(MetaSyncedAt, synced(day)), horizon: day},
		{name: "away long, horizon never", cursor: 10, meta: with(MetaSyncedAt, synced(300*day)), horizon: -1},
		{name: "unreadable caught-up time", cursor: 10, meta: with(MetaSyncedAt, "yesterday"), horizon: day, reconcile: true},
		{name: "caught-up time at cursor 0", cursor: 0, meta: with(MetaSyncedAt, synced(2*day)), horizon: day},
		{name: "format changed", cursor: 10, meta: with(MetaFormat, "0"), horizon: day, rebuild: "config", why: "format changed"},
		{name: "bucket changed", cursor: 10, meta: with(MetaBucket, "other"), horizon: day, rebuild: "config", why: "bucket changed"},
		{name: "stream changed", cursor: 10, meta: with(MetaStream, "KV_other"), horizon: day, rebuild: "identity", why: "stream changed"},
		{name: "bucket recreated", cursor: 10, meta: with(MetaCreated, "2026-06-01T00:00:00Z"), horizon: day, rebuild: "identity", why: "bucket recreated"},
		{name: "scope changed", cursor: 10, meta: with(MetaScope, "b.>"), horizon: day, rebuild: "config", why: "scope changed"},
		{name: "transforms changed", cursor: 10, meta: with(MetaTransforms, "abc"), horizon: day, rebuild: "config", why: "transform chain changed"},
		{name: "metadata missing", cursor: 10, meta: with(MetaScope, "<absent>"), horizon: day, rebuild: "config", why: "scope changed"},
		{name: "only the cursor", cursor: 10, meta: map[string][]byte{}, horizon: day, rebuild: "config", why: "format changed"},
		{name: "first difference wins", cursor: 10, meta: with(MetaBucket, "x", MetaStream, "y"), horizon: day, rebuild: "config", why: "bucket changed"},
		{name: "import cut off", cursor: 0, meta: map[string][]byte{MetaImport: []byte("1")}, horizon: day, rebuild: "import", why: "did not finish"},
		{name: "import finished", cursor: 10, meta: with(MetaImport, ""), horizon: day},
		{name: "rebuild and reconcile are separate", cursor: 10, meta: with(MetaScope, "b.>", MetaSyncedAt, synced(2*day)),
			horizon: day, rebuild: "config", why: "scope changed", reconcile: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := decideResume(c.cursor, c.meta, want, c.horizon, now)
			if d.rebuild != (c.rebuild != "") || d.label != c.rebuild || !strings.Contains(d.why, c.why) {
				t.Errorf("rebuild %v, label %q, why %q; want rebuild %v, label %q, why containing %q",
					d.rebuild, d.label, d.why, c.rebuild != "", c.rebuild, c.why)
			}
			if d.reconcile != c.reconcile || d.reconcile != (d.reconcileWhy != "") {
				t.Errorf("reconcile %v (%q); want %v", d.reconcile, d.reconcileWhy, c.reconcile)
			}
		})
	}
}

func TestTombstoneHorizon(t *testing.T) {
	cases := []struct{ configured, ttl, want time.Duration }{
		{0, 0, reconcile.DefaultHorizon},
		{0, reconcile.DefaultHorizon / 3, reconcile.DefaultHorizon / 3},
		{0, reconcile.DefaultHorizon * 2, reconcile.DefaultHorizon},
		{5 * time.Minute, time.Hour, 5 * time.Minute},
		{-1, time.Hour, -1},
	}
	for _, c := range cases {
		if got := tombstoneHorizon(c.configured, c.ttl); got != c.want {
			t.Errorf("tombstoneHorizon(%v, %v) = %v; want %v", c.configured, c.ttl, got, c.want)
		}
	}
}
