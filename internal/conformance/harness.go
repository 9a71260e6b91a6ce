package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
)

// caseTimeout bounds one case; a store that hangs fails the case instead of
// the whole run.
const caseTimeout = 3 * time.Minute

// Reporter is the part of testing.TB a case reports through: *testing.T,
// a property checker's example (*rapid.T), or the CLI's recorder. Fatalf
// must not return.
type Reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// harness is what a case runs with: it makes directories, starts and opens
// store instances, and reports failures. Its methods are for the case's own
// goroutine; goroutines a case starts report back through channels.
type harness struct {
	rep    Reporter
	ctx    context.Context
	target *Target
	info   storeInfo
	root   string     // directories are made under it
	logs   *tailLog   // the plugin processes' log, shown on failure
	t      *testing.T // set under go test, with property
	// property runs the model case under go test; nil outside it, where
	// the case runs fixed seeds.
	property Property
	rnd      *rand.Rand
	*tracker
}

// tracker holds what a case must release when it ends: shared by a case's
// harness and its children.
type tracker struct {
	mu        sync.Mutex
	instances []instance // every instance started
	cleanups  []func()
}

// Errorf records a failure and lets the case go on.
func (h *harness) Errorf(format string, args ...any) { h.rep.Helper(); h.rep.Errorf(format, args...) }

// Fatalf records a failure and ends the case.
func (h *harness) Fatalf(format string, args ...any) { h.rep.Helper(); h.rep.Fatalf(format, args...) }

// Logf records a note, shown with -v.
func (h *harness) Logf(format string, args ...any) { h.rep.Helper(); h.rep.Logf(format, args...) }

// child is a harness for one run of a property: the case's target, context
// and tracker, with its own Reporter.
func (h *harness) child(rep Reporter) *harness {
	c := *h
	c.rep, c.t, c.property = rep, nil, nil
	return &c
}

// finish releases every instance (killing plugin processes that are still
// running) and removes the case's directories.
func (h *harness) finish() {
	h.mu.Lock()
	insts, cleanups := h.instances, h.cleanups
	h.instances, h.cleanups = nil, nil
	h.mu.Unlock()
	for _, in := range insts {
		in.release()
	}
	for _, f := range slices.Backward(cleanups) {
		f()
	}
}

// abort kills every instance the case started, so that a case stuck in a
// call to a plugin gets an error and ends.
func (h *harness) abort() {
	h.mu.Lock()
	insts := slices.Clone(h.instances)
	h.mu.Unlock()
	for _, in := range insts {
		_ = in.kill()
	}
}

// dir returns a new empty directory for one store.
func (h *harness) dir() string {
	d, err := os.MkdirTemp(h.root, "store-")
	if err != nil {
		h.Fatalf("make store directory: %v", err)
	}
	h.mu.Lock()
	h.cleanups = append(h.cleanups, func() { _ = os.RemoveAll(d) })
	h.mu.Unlock()
	return d
}

// start starts an instance without opening it.
func (h *harness) start() instance {
	in, err := h.target.start(h.ctx, h.logs)
	if err != nil {
		h.Fatalf("start %s: %v", h.target.name, err)
	}
	h.mu.Lock()
	h.instances = append(h.instances, in)
	h.mu.Unlock()
	return in
}

// config is the store_config every Open passes.
func (h *harness) config() []byte {
	if h.target.config == nil {
		return []byte("{}")
	}
	return h.target.config
}

// open starts an instance and opens the store in dir.
func (h *harness) open(dir string) *store {
	return h.openOn(h.start(), dir)
}

// openOn opens the store in dir on a started, closed instance.
func (h *harness) openOn(in instance, dir string) *store {
	st, err := in.Open(h.ctx, dir, h.config())
	if err != nil {
		h.Fatalf("Open(%s): %v", dir, err)
	}
	return &store{instance: in, h: h, dir: dir, state: st}
}

// store is an open instance with helpers that fail the case on error.
type store struct {
	instance
	h     *harness
	dir   string
	state sdk.State // what Open reported
}

func (s *store) apply(b *sdk.Batch) {
	if err := s.Apply(s.h.ctx, b); err != nil {
		s.h.Fatalf("Apply(%d mutations, cursor %d): %v", len(b.Mutations), b.Cursor, err)
	}
}

// beginLoad starts a bulk load (sdk.Loader).
func (s *store) beginLoad() {
	if err := s.BeginLoad(s.h.ctx); err != nil {
		s.h.Fatalf("BeginLoad: %v", err)
	}
}

// snapshot opens a view of the store (sdk.Snapshotter).
func (s *store) snapshot() sdk.Snapshot {
	v, err := s.Snapshot(s.h.ctx)
	if err != nil {
		s.h.Fatalf("Snapshot: %v", err)
	}
	return v
}

// endLoad ends a bulk load.
func (s *store) endLoad() {
	if err := s.EndLoad(s.h.ctx); err != nil {
		s.h.Fatalf("EndLoad: %v", err)
	}
}

// get returns the entry for key and whether the store has it.
func (s *store) get(key []byte) (sdk.Entry, bool) {
	e, err := s.Get(s.h.ctx, key)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.Entry{}, false
	}
	if err != nil {
		s.h.Fatalf("Get(%s): %v", show(key), err)
	}
	return e, true
}

// scan returns copies of the entries in r.
func (s *store) scan(r sdk.Range) []sdk.Entry {
	out, err := scanAll(s.h.ctx, s, r)
	if err != nil {
		s.h.Fatalf("Scan(%s): %v", showRange(r), err)
	}
	return out
}

// scanner is what scanAll reads: a store or a view of one (sdk.Snapshot).
type scanner interface {
	Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error
}

func scanAll(ctx context.Context, st scanner, r sdk.Range) ([]sdk.Entry, error) {
	var out []sdk.Entry
	err := st.Scan(ctx, r, func(e sdk.Entry) error {
		out = append(out, sdk.Entry{Key: bytes.Clone(e.Key), Value: bytes.Clone(e.Value), Revision: e.Revision})
		return nil
	})
	return out, err
}

func (s *store) stats() sdk.Stats {
	st, err := s.Stats(s.h.ctx)
	if err != nil {
		s.h.Fatalf("Stats: %v", err)
	}
	return st
}

func (s *store) close() {
	if err := s.Close(s.h.ctx); err != nil {
		s.h.Fatalf("Close: %v", err)
	}
	s.release()
}

// reopen closes the store and opens its directory in a new instance.
func (s *store) reopen() *store {
	s.close()
	return s.h.open(s.dir)
}

// closeOpen closes the store and opens its directory again in the same
// instance.
func (s *store) closeOpen() *store {
	if err := s.Close(s.h.ctx); err != nil {
		s.h.Fatalf("Close: %v", err)
	}
	return s.h.openOn(s.instance, s.dir)
}

// crash kills the instance and opens its directory in a new one.
func (s *store) crash() *store {
	if err := s.kill(); err != nil {
		s.h.Fatalf("kill: %v", err)
	}
	s.release()
	return s.h.open(s.dir)
}

// tailLog keeps the last lines the plugin processes logged.
type tailLog struct {
	mu    sync.Mutex
	lines []string
	part  []byte
}

const tailLines = 40

func (l *tailLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.part[:i]))
		l.part = l.part[i+1:]
		if len(l.lines) > tailLines {
			l.lines = l.lines[len(l.lines)-tailLines:]
		}
	}
	return len(p), nil
}

func (l *tailLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return ""
	}
	return "store log (last lines):\n\t" + strings.Join(l.lines, "\n\t")
}

// show renders bytes for a message: quoted, and shortened when long.
func show(b []byte) string {
	if len(b) > 48 {
		return fmt.Sprintf("%q…(%d bytes)", b[:32], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func showRange(r sdk.Range) string {
	var parts []string
	add := func(name string, b []byte) {
		if b != nil {
			parts = append(parts, name+"="+show(b))
		}
	}
	add("prefix", r.Prefix)
	add("start", r.Start)
	add("end", r.End)
	add("after", r.After)
	if r.Limit != 0 {
		parts = append(parts, fmt.Sprintf("limit=%d", r.Limit))
	}
	if r.KeysOnly {
		parts = append(parts, "keys-only")
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// tempRoot makes the directory a run's stores live under.
func tempRoot() (string, func(), error) {
	d, err := os.MkdirTemp("", "slipstream-conformance-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}
