package conformance

import (
	"fmt"
	"math/rand/v2"

	"github.com/slipstreamkv/slipstream/sdk"
	"pgregory.net/rapid"
)

// modelSeeds is how many fixed-seed runs the model case makes outside go
// test, where rapid cannot run.
const modelSeeds = 40

// A drawer picks the model run's random choices: rapid under go test (so a
// failure shrinks to a minimal sequence), a seeded generator elsewhere.
type drawer interface {
	intn(label string, n int) int
}

type rapidDrawer struct{ t *rapid.T }

func (d rapidDrawer) intn(label string, n int) int { return rapid.IntRange(0, n-1).Draw(d.t, label) }

type randDrawer struct{ r *rand.Rand }

func (d randDrawer) intn(_ string, n int) int { return d.r.IntN(n) }

// prefixed labels a reporter's messages, e.g. with the seed of a run.
type prefixed struct {
	reporter
	prefix string
}

func (p prefixed) Errorf(format string, args ...any) { p.reporter.Errorf(p.prefix+format, args...) }
func (p prefixed) Fatalf(format string, args ...any) { p.reporter.Fatalf(p.prefix+format, args...) }
func (p prefixed) Logf(format string, args ...any)   { p.reporter.Logf(p.prefix+format, args...) }

func caseModel(h *harness) {
	// Runs share one instance, closed between runs, so that most runs
	// start no process; after a run that fails, the next starts afresh.
	var in instance
	run := func(c *harness, d drawer) {
		cur := in
		in = nil
		in = runModel(c, d, cur)
	}
	if h.t != nil {
		rapid.Check(h.t, func(rt *rapid.T) { run(h.child(rt), rapidDrawer{rt}) })
		return
	}
	for seed := range uint64(modelSeeds) {
		run(h.child(prefixed{h.rep, fmt.Sprintf("seed %d: ", seed)}), randDrawer{rand.New(rand.NewPCG(seed, 0))})
	}
}

// modelKeys is the model run's key space: few keys, so batches collide, in
// an order that byte-wise sorting gets right and others do not.
var modelKeys = []string{"\x00", "a", "a\x00", "a/1", "a/2", "ab", "b", "\x80", "\xff"}

// modelRanges are the bounds random scans pick from ("" leaves one unset).
var modelRanges = []string{"", "\x00", "a", "a/", "a/1", "b", "\x80", "\xff", "\xff\xff"}

func drawValue(d drawer) []byte {
	alphabet := []byte{0, 'x', 0x80, 0xff}
	v := make([]byte, d.intn("value length", 4))
	for i := range v {
		v[i] = alphabet[d.intn("value byte", len(alphabet))]
	}
	return v
}

func drawBatch(d drawer, cursor uint64) *sdk.Batch {
	b := &sdk.Batch{}
	n := d.intn("mutations", 6)
	for i := range n {
		m := sdk.Mutation{Op: sdk.OpDelete, Key: []byte(modelKeys[d.intn("key", len(modelKeys))])}
		if d.intn("put", 3) > 0 {
			m.Op, m.Value, m.Revision = sdk.OpPut, drawValue(d), cursor+uint64(i)+1
		}
		b.Mutations = append(b.Mutations, m)
	}
	b.Cursor = cursor + uint64(n) + uint64(d.intn("cursor gap", 3))
	for _, name := range []string{"stream", "digest", "gen"} {
		if d.intn("set "+name, 4) == 0 {
			if b.Meta == nil {
				b.Meta = map[string][]byte{}
			}
			b.Meta[name] = drawValue(d)
		}
	}
	return b
}

func drawRange(d drawer) sdk.Range {
	pick := func(label string) []byte {
		if i := d.intn(label, len(modelRanges)+1); i < len(modelRanges) && modelRanges[i] != "" {
			return []byte(modelRanges[i])
		}
		return nil
	}
	return sdk.Range{
		Prefix: pick("prefix"), Start: pick("start"), End: pick("end"), After: pick("after"),
		Limit: d.intn("limit", 4), KeysOnly: d.intn("keys only", 4) == 0,
	}
}

// runModel applies a random sequence of operations to a store, on instance
// in (nil: a new one), and to the model, and compares them after every
// step. It returns the instance it ends with, closed.
func runModel(h *harness, d drawer, in instance) instance {
	if in == nil {
		in = h.start()
	}
	s := h.openOn(in, h.dir())
	m := newModel()
	// A store that loads starts some runs with BeginLoad; a run ends its
	// load with EndLoad at a random step, or not at all.
	loads := h.info.Has(capBulkLoad)
	if loads && d.intn("begin load", 3) == 2 { // not 0: failures shrink to runs without a load
		s.beginLoad()
		m.loading = true
		h.expectData(s, m, "after BeginLoad")
	}
	var last *sdk.Batch
	steps := d.intn("steps", 24) + 1
	for i := range steps {
		var what string
		switch op := d.intn("operation", 16); {
		case op < 8:
			last = drawBatch(d, m.cursor)
			s.apply(last)
			m.apply(last)
			what = fmt.Sprintf("Apply(%d mutations, cursor %d)", len(last.Mutations), last.Cursor)
		case op == 8 && last != nil:
			s.apply(last)
			m.apply(last)
			what = "re-Apply of the last batch"
		case op == 9 || (op == 10 && !h.target.canKill):
			s = s.closeOpen()
			what = "Close and Open"
			h.expectState(s, m, fmt.Sprintf("step %d (%s)", i, what))
		case op == 10:
			s = s.crash()
			what = "crash and reopen"
			h.expectState(s, m, fmt.Sprintf("step %d (%s)", i, what))
		case op == 14 && loads:
			s.endLoad() // does nothing if the store is not loading
			m.loading = false
			what = "EndLoad"
		case op == 15 && loads && (m.cursor != 0 || len(m.data) > 0):
			what = "BeginLoad on a store that holds keys or a cursor"
			if err := s.BeginLoad(h.ctx); err == nil {
				h.Fatalf("step %d: %s succeeded; want an error", i, what)
			}
		default:
			r := drawRange(d)
			what = "Scan" + showRange(r)
			if diff := diffEntries(s.scan(r), m.scan(r), r.KeysOnly); diff != "" {
				h.Fatalf("step %d (%s): %s", i, what, diff)
			}
		}
		h.expectData(s, m, fmt.Sprintf("step %d (%s)", i, what))
	}
	if err := s.Close(h.ctx); err != nil {
		h.Fatalf("Close: %v", err)
	}
	return s.instance
}
