package conformance

import (
	"fmt"
	"math/rand/v2"

	"github.com/slipstreamkv/slipstream/sdk"
)

// modelSeeds is how many fixed-seed runs the model case makes outside go
// test, where rapid cannot run.
const modelSeeds = 40

// A Drawer picks the model run's random choices: a shrinking property
// checker's under go test (so a failure shrinks to a minimal sequence), a
// seeded generator elsewhere. IntN returns a number in [0, n), label names
// the choice in a failure's report.
type Drawer interface {
	IntN(label string, n int) int
}

type randDrawer struct{ r *rand.Rand }

func (d randDrawer) IntN(_ string, n int) int { return d.r.IntN(n) }

// prefixed labels a Reporter's messages, e.g. with the seed of a run.
type prefixed struct {
	Reporter
	prefix string
}

func (p prefixed) Errorf(format string, args ...any) { p.Reporter.Errorf(p.prefix+format, args...) }
func (p prefixed) Fatalf(format string, args ...any) { p.Reporter.Fatalf(p.prefix+format, args...) }
func (p prefixed) Logf(format string, args ...any)   { p.Reporter.Logf(p.prefix+format, args...) }

func caseModel(h *harness) {
	// Runs share one instance, closed between runs, so that most runs
	// start no process; after a run that fails, the next starts afresh.
	var in instance
	run := func(c *harness, d Drawer) {
		cur := in
		in = nil
		in = runModel(c, d, cur)
	}
	if h.property != nil {
		h.property(h.t, func(rep Reporter, d Drawer) { run(h.child(rep), d) })
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

func drawValue(d Drawer) []byte {
	alphabet := []byte{0, 'x', 0x80, 0xff}
	v := make([]byte, d.IntN("value length", 4))
	for i := range v {
		v[i] = alphabet[d.IntN("value byte", len(alphabet))]
	}
	return v
}

func drawBatch(d Drawer, cursor uint64) *sdk.Batch {
	b := &sdk.Batch{}
	n := d.IntN("mutations", 6)
	for i := range n {
		m := sdk.Mutation{Op: sdk.OpDelete, Key: []byte(modelKeys[d.IntN("key", len(modelKeys))])}
		if d.IntN("put", 3) > 0 {
			m.Op, m.Value, m.Revision = sdk.OpPut, drawValue(d), cursor+uint64(i)+1
		}
		b.Mutations = append(b.Mutations, m)
	}
	b.Cursor = cursor + uint64(n) + uint64(d.IntN("cursor gap", 3))
	for _, name := range []string{"stream", "digest", "gen"} {
		if d.IntN("set "+name, 4) == 0 {
			if b.Meta == nil {
				b.Meta = map[string][]byte{}
			}
			b.Meta[name] = drawValue(d)
		}
	}
	return b
}

func drawRange(d Drawer) sdk.Range {
	pick := func(label string) []byte {
		if i := d.IntN(label, len(modelRanges)+1); i < len(modelRanges) && modelRanges[i] != "" {
			return []byte(modelRanges[i])
		}
		return nil
	}
	return sdk.Range{
		Prefix: pick("prefix"), Start: pick("start"), End: pick("end"), After: pick("after"),
		Limit: d.IntN("limit", 4), KeysOnly: d.IntN("keys only", 4) == 0,
	}
}

// runModel applies a random sequence of operations to a store, on instance
// in (nil: a new one), and to the model, and compares them after every
// step. It returns the instance it ends with, closed.
func runModel(h *harness, d Drawer, in instance) instance {
	if in == nil {
		in = h.start()
	}
	s := h.openOn(in, h.dir())
	m := newModel()
	// A store that loads starts some runs with BeginLoad; a run ends its
	// load with EndLoad at a random step, or not at all.
	loads := h.info.Has(capBulkLoad)
	if loads && d.IntN("begin load", 3) == 2 { // not 0: failures shrink to runs without a load
		s.beginLoad()
		m.beginLoad()
		h.expectData(s, m, "after BeginLoad")
	}
	var last *sdk.Batch
	steps := d.IntN("steps", 24) + 1
	for i := range steps {
		var what string
		switch op := d.IntN("operation", 16); {
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
			rec, _ := h.recovered(s, m, nil, fmt.Sprintf("step %d (%s)", i, what))
			*m = *rec
			h.expectState(s, m, fmt.Sprintf("step %d (%s)", i, what))
		case op == 14 && loads:
			s.endLoad() // does nothing if the store is not loading
			m.endLoad()
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
