package conformance

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
)

// genBatch is batch g of a series in which every batch rewrites the same n
// keys (value: g, then filler) with revision g, moves a marker key, and
// records g as cursor and as metadata, so any mix of two batches shows.
func genBatch(filler []byte, n int, g uint64) *sdk.Batch {
	b := &sdk.Batch{Cursor: g, Meta: map[string][]byte{"gen": []byte(strconv.FormatUint(g, 10))}}
	b.Mutations = make([]sdk.Mutation, 0, n+2)
	for i := range n {
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(filler)), g)
		b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "gen/%06d", i), Value: append(v, filler...), Revision: g})
	}
	b.Mutations = append(b.Mutations,
		sdk.Mutation{Op: sdk.OpDelete, Key: fmt.Appendf(nil, "marker/%06d", g-1)},
		sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "marker/%06d", g), Revision: g},
	)
	return b
}

// randomDelay is a duration in [0, max].
func (h *harness) randomDelay(max time.Duration) time.Duration {
	return time.Duration(h.rnd.Int64N(int64(max) + 1))
}

func caseCrashAfterApply(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	apply := func(b *sdk.Batch) {
		s.apply(b)
		m.apply(b)
	}
	b := batch(3, put("a", "1", 1), put("b", "2", 2), put("c", "3", 3))
	b.Meta = map[string][]byte{"gen": []byte("1")}
	apply(b)
	apply(batch(5, put("b", "22", 4), del("c")))
	apply(&sdk.Batch{Cursor: 6, Meta: map[string][]byte{"gen": []byte("2")}})
	s = s.crash()
	h.expectAll(s, m, "after a crash")
	apply(batch(8, del("a"), put("d", "4", 8)))
	s = s.crash()
	h.expectAll(s, m, "after a second crash")
	s.close()
}

// kills is how many times kill-mid-apply kills a plugin.
const kills = 5

func caseKillMidApply(h *harness) {
	const n, size = 2048, 4096 // 8 MiB per batch: a plugin receives it in chunks
	filler := randomBytes(h.rnd, size-8)
	dir := h.dir()
	s := h.open(dir)
	m := newModel()
	// Two batches without a kill measure how long one takes: the first
	// writes new keys, later ones overwrite them.
	var took time.Duration
	for g := uint64(1); g <= 2; g++ {
		b := genBatch(filler, n, g)
		start := time.Now()
		s.apply(b)
		took = max(took, time.Since(start))
		m.apply(b)
	}
	// Kill i lands at a random point of the i-th of `kills` equal slices
	// of twice the expected Apply, so the kills cover all of it (sending,
	// committing, answering) however long this one takes.
	span := 2 * took
	var out, in int
	for i := range kills {
		b := genBatch(filler, n, uint64(i+3))
		var landed bool
		s, landed = h.killDuringApply(s, m, dir, b, span*time.Duration(i)/kills+h.randomDelay(span/kills), "")
		if landed {
			in++
		} else {
			out++
		}
	}
	h.Logf("a batch took up to %v to apply; %d kills left it out, %d in", took.Round(time.Millisecond), out, in)
	s.close()
}

// killDuringApply runs s.Apply(b), SIGKILLs the plugin delay later and
// reopens the store in dir. The batch must be whole or absent (absent only
// if Apply did not return success, or during a load, which may also lose
// earlier batches of its own: model.crashStates), and the reopened store
// must equal m, which takes the state the store was found in. It reports
// whether b landed. what names the phase in messages ("" or, for
// instance, " of the load").
func (h *harness) killDuringApply(s *store, m *model, dir string, b *sdk.Batch, delay time.Duration, what string) (*store, bool) {
	h.rep.Helper()
	g, prev := b.Cursor, m.cursor
	done := make(chan error, 1)
	go func(s *store) { done <- s.Apply(h.ctx, b) }(s)
	time.Sleep(delay)
	if err := s.kill(); err != nil {
		h.Fatalf("kill during the Apply of batch %d%s: %v", g, what, err)
	}
	err := <-done
	s.release()
	s = h.open(dir)
	when := fmt.Sprintf("reopened at cursor %d after a kill %v into batch %d%s", s.state.Cursor, delay.Round(time.Millisecond), g, what)
	rec, landed := h.recovered(s, m, b, when)
	switch {
	case landed:
		h.Logf("killed %v into batch %d%s: the batch is in", delay.Round(time.Millisecond), g, what)
	case err == nil && !m.loading:
		h.Fatalf("Apply of batch %d%s returned success, yet after the kill the store reopened at the previous cursor %d", g, what, prev)
	default:
		h.Logf("killed %v into batch %d%s: the batch is out (reopened at cursor %d)", delay.Round(time.Millisecond), g, what, rec.cursor)
	}
	*m = *rec
	h.expectState(s, m, when)
	h.expectScan(s, m, when)
	return s, landed
}

// recovered returns the state of the model that a store reopened after a
// crash holds: m's own (model.crashStates: during a load, also an earlier
// one), or m with pending applied when pending, a batch whose Apply the
// crash interrupted, is not nil. The second result says it is the latter.
// It fails the case when the store holds none of them, naming how it
// differs from the newest.
func (h *harness) recovered(s *store, m *model, pending *sdk.Batch, when string) (*model, bool) {
	h.rep.Helper()
	states := m.crashStates()
	if pending != nil {
		next := m.clone()
		next.since = slices.Clone(m.since)
		next.apply(pending)
		states = append([]*model{next}, states...)
	}
	all := s.scan(sdk.Range{})
	for i, st := range states {
		if diffState(s.state, st) == "" && diffEntries(all, st.scan(sdk.Range{}), false) == "" {
			return st, pending != nil && i == 0
		}
	}
	d := diffState(s.state, states[0])
	if d == "" {
		d = "Scan: " + diffEntries(all, states[0].scan(sdk.Range{}), false)
	}
	if len(states) > 1 {
		d += fmt.Sprintf(" (and it matches none of the %d earlier states a crash may leave)", len(states)-1)
	}
	h.Fatalf("%s: %s", when, d)
	return nil, false
}

func caseApplyCancel(h *harness) {
	const n, size = 2048, 4096 // 8 MiB per batch: a plugin receives it in chunks
	filler := randomBytes(h.rnd, size-8)
	s := h.open(h.dir())
	m := newModel()
	first := genBatch(filler, n, 1)
	start := time.Now()
	s.apply(first)
	took := time.Since(start)
	m.apply(first)
	for g := uint64(2); g <= 6; g++ {
		b := genBatch(filler, n, g)
		next := m.clone()
		next.apply(b)
		ctx, cancel := context.WithCancel(h.ctx)
		if g == 2 {
			cancel() // cancelled before the call
		} else {
			time.AfterFunc(h.randomDelay(took), cancel)
		}
		err := s.Apply(ctx, b)
		cancel()
		s = s.reopen()
		// Cancelled or not, the batch is in or out as a whole; a success
		// means in.
		got := s.scan(sdk.Range{})
		switch {
		case diffEntries(got, next.scan(sdk.Range{}), false) == "" && diffState(s.state, next) == "":
			m = next
		case err == nil:
			h.Fatalf("Apply of batch %d returned success, but the store does not hold it: %s %s",
				g, diffEntries(got, next.scan(sdk.Range{}), false), diffState(s.state, next))
		default:
			when := fmt.Sprintf("Apply of batch %d cancelled (%v), neither applied nor left out", g, err)
			h.expectState(s, m, when)
			h.expectScan(s, m, when)
			s.apply(b) // the host retries a failed batch
			m = next
		}
		h.expectScan(s, m, fmt.Sprintf("after batch %d", g))
	}
	s = s.reopen()
	h.expectAll(s, m, "after reopen")
	s.close()
}

// openTimeout bounds an Open that is expected to fail.
const openTimeout = 30 * time.Second

func caseCorruptDir(h *harness) {
	dir := h.dir()
	s := h.open(dir)
	b := bulkBatch(h.rnd, "c/", 512, 256, 1)
	b.Meta = map[string][]byte{"gen": []byte("1")}
	s.apply(b)
	s.apply(batch(2, del("c/000001")))
	if h.info.Has(capCompact) {
		if err := s.Compact(h.ctx); err != nil {
			h.Fatalf("Compact: %v", err)
		}
	}
	s.close()
	n, err := corruptFiles(dir, h)
	if err != nil {
		h.Fatalf("corrupting %s: %v", dir, err)
	}
	if n == 0 {
		h.Fatalf("the store left no non-empty file in its directory %s", dir)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		in := h.start()
		ctx, cancel := context.WithTimeout(h.ctx, openTimeout)
		st, err := in.Open(ctx, dir, h.config())
		timedOut := ctx.Err() != nil
		cancel()
		switch {
		case timedOut:
			h.Fatalf("Open of a directory whose %d files are garbage did not return within %v", n, openTimeout)
		case err == nil:
			h.Fatalf("Open of a directory whose %d files are garbage succeeded (cursor %d, %d metadata keys); want an error", n, st.Cursor, len(st.Meta))
		}
		h.Logf("attempt %d: Open refused the corrupt directory: %v", attempt, err)
		// The instance survived its failed Open and still works.
		if _, err := in.Open(h.ctx, h.dir(), h.config()); err != nil {
			h.Fatalf("after refusing the corrupt directory, the same instance cannot open an empty one (did it crash?): %v", err)
		}
		if err := in.Close(h.ctx); err != nil {
			h.Fatalf("Close: %v", err)
		}
		in.release()
	}
}

// corruptFiles overwrites every non-empty regular file under dir with
// random bytes of the same length.
func corruptFiles(dir string, h *harness) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() == 0 {
			return nil
		}
		n++
		return os.WriteFile(path, randomBytes(h.rnd, int(info.Size())), info.Mode().Perm())
	})
	return n, err
}

func caseCompact(h *harness) {
	s := h.open(h.dir())
	m := newModel()
	apply := func(b *sdk.Batch) {
		s.apply(b)
		m.apply(b)
	}
	for i := range 5 {
		apply(bulkBatch(h.rnd, fmt.Sprintf("c%d/", i), 2000, 200, uint64(i+1)))
	}
	b := bulkBatch(h.rnd, "c2/", 1000, 300, 6)
	for i := range 2000 {
		b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpDelete, Key: fmt.Appendf(nil, "c0/%06d", i)})
	}
	b.Meta = map[string][]byte{"loaded": []byte("yes")}
	apply(b)
	if err := s.Compact(h.ctx); err != nil {
		h.Fatalf("Compact: %v", err)
	}
	h.expectScan(s, m, "after Compact")
	s = s.reopen()
	h.expectState(s, m, "after Compact and reopen")
	h.expectScan(s, m, "after Compact and reopen")
	s.close()
}

// pipeBatches is how many batches kill-mid-pipe sends on each pipe.
const pipeBatches = 12

func caseKillMidPipe(h *harness) {
	const n, size = 256, 1024 // 256 KiB per batch, about what the host sends
	filler := randomBytes(h.rnd, size-8)
	dir := h.dir()
	s := h.open(dir)
	m := newModel()
	// One pipe without a kill measures how long its batches take.
	start := time.Now()
	s = h.killDuringPipe(s, m, dir, filler, n, -1)
	span := time.Since(start)
	var landed int
	for i := range kills {
		delay := span*time.Duration(i)/kills + h.randomDelay(span/kills)
		before := m.cursor
		s = h.killDuringPipe(s, m, dir, filler, n, delay)
		landed += int(m.cursor - before)
	}
	h.Logf("a pipe of %d batches took %v; %d kills left %d of their %d batches in", pipeBatches,
		span.Round(time.Millisecond), kills, landed, kills*pipeBatches)
	s.close()
}

// killDuringPipe sends pipeBatches batches of genBatch on a pipe of s
// without waiting, waits for them on another goroutine, SIGKILLs the
// plugin delay after the first send (not at all if delay < 0), and reopens
// the store in dir. It must reopen at the cursor of one of the batches (or
// of m), no earlier than the last the pipe acknowledged, holding exactly
// the batches up to it: m takes them.
func (h *harness) killDuringPipe(s *store, m *model, dir string, filler []byte, n int, delay time.Duration) *store {
	h.rep.Helper()
	pp, ok := s.instance.(piper)
	if !ok {
		h.Fatalf("the store has no apply pipe")
	}
	p, err := pp.Pipe(h.ctx)
	if err != nil {
		h.Fatalf("open an apply pipe: %v", err)
	}
	defer p.Close()
	prev := m.cursor
	batches := make([]*sdk.Batch, pipeBatches)
	for i := range batches {
		batches[i] = genBatch(filler, n, prev+uint64(i)+1)
	}
	// The sender tells the waiter of each batch it sent: Wait is for a
	// batch already sent.
	sentOne := make(chan struct{}, len(batches))
	sent := make(chan int, 1)  // how many Send accepted
	acked := make(chan int, 1) // how many Wait reported committed
	wrong := make(chan string, 1)
	go func() {
		k := 0
		for ; k < len(batches); k++ {
			if err := p.Send(batches[k]); err != nil {
				break
			}
			sentOne <- struct{}{}
		}
		close(sentOne)
		sent <- k
	}()
	go func() {
		k := 0
		for range sentOne {
			cursor, err := p.Wait()
			if err != nil {
				break
			}
			if cursor != batches[k].Cursor {
				wrong <- fmt.Sprintf("the pipe acknowledged cursor %d for batch %d", cursor, batches[k].Cursor)
				break
			}
			k++
		}
		acked <- k
	}()
	// What the waiter found wrong, once it has stopped.
	checkAcks := func() int {
		k := <-acked
		select {
		case msg := <-wrong:
			h.Fatalf("%s", msg)
		default:
		}
		return k
	}
	if delay < 0 {
		if k := checkAcks(); k != len(batches) {
			h.Fatalf("without a kill, the pipe acknowledged %d of %d batches", k, len(batches))
		}
		<-sent
		for _, b := range batches {
			m.apply(b)
		}
		return s
	}
	time.Sleep(delay)
	if err := s.kill(); err != nil {
		h.Fatalf("kill during the pipe of batches %d-%d: %v", prev+1, prev+pipeBatches, err)
	}
	p.Close() // the acknowledgements stop at the kill; do not wait for more
	k, nsent := checkAcks(), <-sent
	s.release()
	s = h.open(dir)
	got := s.state.Cursor
	when := fmt.Sprintf("reopened at cursor %d after a kill %v into a pipe of batches %d-%d (%d sent, %d acknowledged)",
		got, delay.Round(time.Millisecond), prev+1, prev+pipeBatches, nsent, k)
	switch {
	case got < prev || got > prev+uint64(nsent):
		h.Fatalf("%s: not the cursor of a batch sent", when)
	case got < prev+uint64(k):
		h.Fatalf("%s: a batch the pipe acknowledged is missing", when)
	}
	for _, b := range batches[:got-prev] {
		m.apply(b)
	}
	h.Logf("%s", when)
	h.expectState(s, m, when)
	h.expectScan(s, m, when)
	return s
}
