package objstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"pgregory.net/rapid"
)

// protocol is the set of decisions the model runs: the package's own
// functions, or a broken variant of one of them.
type protocol struct {
	decide          func(cur *Pointer, next Pointer) (bool, error)
	withinWindow    func(elapsed, window time.Duration) bool
	removable       func(cur *Pointer, object string) bool
	retained        func(cur *Pointer, now time.Time, grace time.Duration) []string
	prunable        func(name string, objects []objectInfo, keep []string, now time.Time, grace time.Duration) []string
	leaseOutcome    func(createErr error) (bool, error)
	releaseRevision func(Lease) uint64
}

var theProtocol = protocol{decidePointer, withinWindow, removable, retained, prunable, leaseOutcome, releaseRevision}

// The model's constants: the publish window is at most the grace, as Prune
// requires; model time moves in whole seconds, up to more than both at once.
const (
	modelSeries    = "s"
	modelExporters = 4 // the last one takes no lease
	modelWindow    = 5 * time.Second
	modelGrace     = 8 * time.Second
	modelTTL       = 4 * time.Second
	modelMaxTick   = 12
)

var modelEpoch0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// world is the model: an Object Store, a pointer key and a lease key with
// the server's semantics (compare-and-swap, TTL expiry), a stream that is
// written and sometimes recreated, exporters that take the lease, upload,
// read the pointer, swap it, crash and release, and a pruner whose steps
// (list and choose, re-read the pointer, delete) interleave with theirs.
type world struct {
	p   protocol
	now time.Time

	objects map[string]time.Time // object name -> modification time
	fixed   []string             // objects of no payload of the series, never pruned
	uploads int

	pointer *Pointer // the pointer key, nil when absent
	ptrSeq  uint64
	seen    *Pointer // the most advanced pointer observed

	lease    *modelLease // the lease key, nil when absent
	leaseSeq uint64

	epoch int    // stream generation: its creation time is modelEpoch0 + epoch hours
	head  uint64 // the stream's last sequence

	exporters [modelExporters]exporter
	pruner    pruner
}

type modelLease struct {
	holder  string
	rev     uint64
	expires time.Time // the server's TTL
}

type exporter struct {
	noLease bool // exports without the lease: Publish alone keeps the pointer safe
	epoch   int
	cursor  uint64 // where its fold is
	lease   *Lease // the lease it believes it took, nil when none
	stage   *stage // an upload not yet settled
}

type stage struct {
	next    Pointer
	started time.Time
	read    bool     // the pointer was read and decide said move
	cur     *Pointer // what it read
}

type pruner struct {
	now     time.Time // the server's time when it listed
	queue   []string  // chosen for deletion, not yet done
	checked bool      // the pointer was re-read for queue[0]
}

func newWorld(p protocol) *world {
	w := &world{p: p, now: modelEpoch0.Add(time.Hour), objects: map[string]time.Time{}}
	// Objects of other series and non-payloads in this series' prefix.
	w.fixed = []string{modelSeries + "/notes.txt", objectName("t", digest(-1)), modelSeries + ".x/" + digest(-2) + objectSuffix}
	for _, o := range w.fixed {
		w.objects[o] = w.now.Add(-time.Hour)
	}
	w.exporters[modelExporters-1].noLease = true
	return w
}

func digest(n int) string {
	s := sha256.Sum256([]byte(strconv.Itoa(n)))
	return hex.EncodeToString(s[:])
}

func streamCreated(epoch int) time.Time {
	return modelEpoch0.Add(time.Duration(epoch) * time.Hour)
}

func clonePointer(p *Pointer) *Pointer {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// ahead orders pointers as the protocol promises: by stream, then cursor.
func ahead(a, b *Pointer) bool {
	if !a.StreamCreated.Equal(b.StreamCreated) {
		return a.StreamCreated.After(b.StreamCreated)
	}
	return a.Cursor > b.Cursor
}

// check returns the first invariant that does not hold, of: the object the
// pointer names exists (it can be downloaded); so does the one it named
// before, for the grace after the move; the pointer never goes back (by
// stream, then cursor) nor vanishes; objects that are no payloads of the
// series stay; at most one exporter holds an unexpired lease. pruneDelete
// checks that nothing is pruned within its grace, and runModel that, once
// the grace has passed, everything but the pointer's payload was.
func (w *world) check() error {
	if p := w.pointer; p != nil {
		if _, ok := w.objects[p.Object]; !ok {
			return fmt.Errorf("the pointer (cursor %d) names %s, which does not exist", p.Cursor, p.Object)
		}
		if p.Previous != "" && w.now.Sub(p.Published) < modelGrace {
			if _, ok := w.objects[p.Previous]; !ok {
				return fmt.Errorf("the previous payload %s was removed %v after the pointer moved, within the grace", p.Previous, w.now.Sub(p.Published))
			}
		}
		if w.seen != nil && ahead(w.seen, p) {
			return fmt.Errorf("the pointer went back from cursor %d (stream %v) to %d (stream %v)",
				w.seen.Cursor, w.seen.StreamCreated, p.Cursor, p.StreamCreated)
		}
		w.seen = clonePointer(p)
	} else if w.seen != nil {
		return errors.New("the pointer vanished")
	}
	for _, o := range w.fixed {
		if _, ok := w.objects[o]; !ok {
			return fmt.Errorf("%s, no payload of the series, was removed", o)
		}
	}
	holders := 0
	for _, e := range w.exporters {
		if e.lease != nil && w.now.Before(e.lease.Expires) {
			holders++
		}
	}
	if holders > 1 {
		return fmt.Errorf("%d exporters hold the lease at once", holders)
	}
	return nil
}

// The server's side of the two keys.

func (w *world) leaseLive() *modelLease {
	if w.lease != nil && w.now.Before(w.lease.expires) {
		return w.lease
	}
	return nil
}

func (w *world) leaseCreate(holder string) (uint64, error) {
	if w.leaseLive() != nil {
		return 0, jetstream.ErrKeyExists
	}
	w.leaseSeq++
	w.lease = &modelLease{holder: holder, rev: w.leaseSeq, expires: w.now.Add(modelTTL)}
	return w.leaseSeq, nil
}

// leaseDelete deletes the lease key if it is at rev (0: whatever it is). An
// expired key has been replaced by the server's marker: no revision of a
// lease matches it.
func (w *world) leaseDelete(rev uint64) error {
	live := w.leaseLive()
	if rev != 0 && (live == nil || live.rev != rev) {
		return jetstream.ErrKeyRevisionMismatch
	}
	w.lease = nil
	return nil
}

// The exporters' steps, as Publish and TryLease take them.

func (w *world) sync(t *rapid.T, i int) {
	e := &w.exporters[i]
	if e.epoch != w.epoch {
		e.epoch, e.cursor = w.epoch, 0
	}
	e.cursor = rapid.Uint64Range(e.cursor, max(e.cursor, w.head)).Draw(t, "cursor")
}

func (w *world) takeLease(t *rapid.T, i int) {
	e := &w.exporters[i]
	if e.lease != nil && w.now.Before(e.lease.Expires) {
		return
	}
	holder := "e" + strconv.Itoa(i)
	rev, err := w.leaseCreate(holder)
	held, err := w.p.leaseOutcome(err)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	e.lease = nil
	if held {
		e.lease = &Lease{Name: modelSeries, Holder: holder, Revision: rev, TTL: modelTTL, Expires: w.now.Add(modelTTL)}
	}
}

func (w *world) release(i int) {
	e := &w.exporters[i]
	if e.lease != nil {
		_ = w.leaseDelete(w.p.releaseRevision(*e.lease))
		e.lease = nil
	}
}

// upload starts an export, which only a lease holder does (or the
// exporter that takes no lease).
func (w *world) upload(i int) {
	e := &w.exporters[i]
	if e.stage != nil || !e.noLease && (e.lease == nil || !w.now.Before(e.lease.Expires)) {
		return
	}
	w.uploads++
	object := objectName(modelSeries, digest(w.uploads))
	w.objects[object] = w.now
	// Equal folds have equal content: the hash depends on the stream and
	// the cursor only, and sometimes stays the same as the cursor moves.
	hash := fmt.Sprintf("h%d.%d", e.epoch, e.cursor/2)
	e.stage = &stage{started: w.now, next: Pointer{
		Object: object, ContentHash: hash, Cursor: e.cursor, Bucket: "b", Stream: "KV_b",
		StreamCreated: streamCreated(e.epoch), Exporter: "e" + strconv.Itoa(i),
	}}
}

// discard is Publish's cleanup of a payload the pointer cur did not take.
func (w *world) discard(e *exporter, cur *Pointer) {
	if w.p.removable(cur, e.stage.next.Object) {
		delete(w.objects, e.stage.next.Object)
	}
	e.stage = nil
}

func (w *world) readPointer(t *rapid.T, i int) {
	e := &w.exporters[i]
	if e.stage == nil || e.stage.read {
		return
	}
	cur := clonePointer(w.pointer)
	move, err := w.p.decide(cur, e.stage.next)
	if err != nil && !errors.Is(err, ErrSuperseded) {
		t.Fatalf("decide: %v", err)
	}
	if err != nil || !move {
		w.discard(e, cur)
		return
	}
	e.stage.read, e.stage.cur = true, cur
}

func (w *world) swap(i int) {
	e := &w.exporters[i]
	if e.stage == nil || !e.stage.read {
		return
	}
	st := e.stage
	if !w.p.withinWindow(w.now.Sub(st.started), modelWindow) {
		w.discard(e, st.cur)
		return
	}
	if (st.cur == nil) != (w.pointer == nil) || st.cur != nil && st.cur.Revision != w.pointer.Revision {
		st.read, st.cur = false, nil // lost the swap: read again
		return
	}
	next := st.next
	if st.cur != nil {
		next.Previous = st.cur.Object
	}
	w.ptrSeq++
	next.Revision, next.Published = w.ptrSeq, w.now
	w.pointer = &next
	e.stage = nil
}

func (w *world) crash(i int) {
	w.exporters[i].stage = nil
	w.exporters[i].lease = nil
}

// The pruner's steps, as Prune takes them.

func (w *world) prunePlan() {
	if len(w.pruner.queue) > 0 {
		return
	}
	var objects []objectInfo
	for name, mod := range w.objects {
		objects = append(objects, objectInfo{Name: name, ModTime: mod})
	}
	sort.Slice(objects, func(a, b int) bool { return objects[a].Name < objects[b].Name })
	keep := w.p.retained(clonePointer(w.pointer), w.now, modelGrace)
	w.pruner = pruner{now: w.now, queue: w.p.prunable(modelSeries, objects, keep, w.now, modelGrace)}
}

func (w *world) pruneCheck() {
	if len(w.pruner.queue) == 0 || w.pruner.checked {
		return
	}
	if slices.Contains(w.p.retained(clonePointer(w.pointer), w.pruner.now, modelGrace), w.pruner.queue[0]) {
		w.pruner.queue = w.pruner.queue[1:]
		return
	}
	w.pruner.checked = true
}

// pruneDelete removes the checked object; an object is never removed
// before it is older than the grace.
func (w *world) pruneDelete() error {
	if !w.pruner.checked {
		return nil
	}
	object := w.pruner.queue[0]
	w.pruner.queue, w.pruner.checked = w.pruner.queue[1:], false
	mod, ok := w.objects[object]
	if !ok {
		return nil // gone already
	}
	if age := w.now.Sub(mod); age <= modelGrace {
		return fmt.Errorf("%s was pruned %v after its upload, within the grace %v", object, age, modelGrace)
	}
	delete(w.objects, object)
	return nil
}

// pruneAll runs a whole Prune.
func (w *world) pruneAll() error {
	for w.prunePlan(); len(w.pruner.queue) > 0; {
		w.pruneCheck()
		if err := w.pruneDelete(); err != nil {
			return err
		}
	}
	return nil
}

// runModel draws a history of the world under protocol p, checking the
// invariants after every step, then stops the exporters, lets the grace
// pass and prunes: what is left must be the pointer's payload alone.
func runModel(t *rapid.T, p protocol) {
	w := newWorld(p)
	exporterStep := map[string]func(*rapid.T, int){
		// An exporter's next step: take the lease, upload, read the
		// pointer, swap it.
		"export": func(t *rapid.T, i int) {
			switch e := &w.exporters[i]; {
			case e.stage == nil && !e.noLease && (e.lease == nil || !w.now.Before(e.lease.Expires)):
				w.takeLease(t, i)
			case e.stage == nil:
				w.upload(i)
			case !e.stage.read:
				w.readPointer(t, i)
			default:
				w.swap(i)
			}
		},
		"sync":    w.sync,
		"release": func(_ *rapid.T, i int) { w.release(i) },
		"crash":   func(_ *rapid.T, i int) { w.crash(i) },
	}
	steps := map[string]func(*rapid.T) error{
		"tick": func(t *rapid.T) error {
			w.now = w.now.Add(time.Duration(rapid.IntRange(1, modelMaxTick).Draw(t, "seconds")) * time.Second)
			return nil
		},
		"write": func(t *rapid.T) error {
			w.head += rapid.Uint64Range(1, 5).Draw(t, "writes")
			return nil
		},
		"recreate": func(t *rapid.T) error {
			w.epoch++
			w.head = rapid.Uint64Range(0, 3).Draw(t, "head")
			return nil
		},
		"prune-plan":   func(*rapid.T) error { w.prunePlan(); return nil },
		"prune-check":  func(*rapid.T) error { w.pruneCheck(); return nil },
		"prune-delete": func(*rapid.T) error { return w.pruneDelete() },
	}
	for name, step := range exporterStep {
		steps[name] = func(t *rapid.T) error {
			step(t, rapid.IntRange(0, modelExporters-1).Draw(t, "exporter"))
			return nil
		}
	}
	// Exports move on more often than the rest; rapid also draws the first
	// entries more often than the others.
	names := []string{
		"export", "export", "sync", "tick", "write", "export", "prune-plan", "prune-check", "prune-delete",
		"export", "sync", "tick", "export", "release", "crash", "recreate",
	}
	for name := range steps {
		if !slices.Contains(names, name) {
			t.Fatalf("step %s is never drawn", name)
		}
	}

	n := rapid.IntRange(1, 500).Draw(t, "steps")
	for range n {
		name := rapid.SampledFrom(names).Draw(t, "step")
		if err := steps[name](t); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := w.check(); err != nil {
			t.Fatalf("after %s: %v", name, err)
		}
	}

	// Quiesce: exporters stop (what they uploaded is orphaned), the grace
	// passes after the last move, the pruner finishes and prunes again.
	for i := range w.exporters {
		w.crash(i)
	}
	for len(w.pruner.queue) > 0 {
		w.pruneCheck()
		if err := w.pruneDelete(); err != nil {
			t.Fatalf("prune: %v", err)
		}
	}
	w.now = w.now.Add(modelGrace + modelWindow + time.Second)
	if err := w.pruneAll(); err != nil {
		t.Fatalf("final prune: %v", err)
	}
	if err := w.check(); err != nil {
		t.Fatalf("after the final prune: %v", err)
	}
	var left []string
	for name := range w.objects {
		if !slices.Contains(w.fixed, name) && (w.pointer == nil || name != w.pointer.Object) {
			left = append(left, name)
		}
	}
	if len(left) > 0 {
		t.Fatalf("after the grace, prune left %v besides the pointer's payload", left)
	}
}

// TestModel checks the invariants of the protocol (see runModel and
// check) over ten times rapid's checks: the model is cheap.
func TestModel(t *testing.T) {
	for range 10 {
		rapid.Check(t, func(t *rapid.T) { runModel(t, theProtocol) })
	}
}
