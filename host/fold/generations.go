package fold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A fold's directory holds numbered generations and a CURRENT file naming
// the published one:
//
//	<dir>/CURRENT       "gen-000002\n"
//	<dir>/gen-000002/   the published generation (the store's own files)
//	<dir>/gen-000003/   a shadow being built (present only during a rebuild)
//
// Publishing a shadow is one atomic rename of CURRENT. A crash leaves either
// the old generation published (the shadow is resumed or wiped on restart)
// or the new one (the old directory is deleted on restart): never a mix.

const currentFile = "CURRENT"

func genName(n int) string { return fmt.Sprintf("gen-%06d", n) }

func parseGen(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "gen-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}

// layout is what a fold directory holds at start-up.
type layout struct {
	published int // 0: none yet
	shadow    int // 0: none
}

// scanDir reads the fold directory and deletes what a crash left behind:
// generations older than the published one and every shadow but the newest.
func scanDir(dir string) (layout, error) {
	var l layout
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return l, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, currentFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return l, err
	default:
		n, ok := parseGen(strings.TrimSpace(string(raw)))
		if !ok {
			return l, fmt.Errorf("%s: corrupt %s file: %q", dir, currentFile, raw)
		}
		l.published = n
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return l, err
	}
	var gens []int
	for _, e := range entries {
		if n, ok := parseGen(e.Name()); ok && e.IsDir() {
			gens = append(gens, n)
		}
	}
	sort.Ints(gens)
	for _, n := range gens {
		if n > l.published && n == gens[len(gens)-1] {
			l.shadow = n
			continue
		}
		if n != l.published {
			if err := os.RemoveAll(filepath.Join(dir, genName(n))); err != nil {
				return l, err
			}
		}
	}
	if l.published > 0 {
		if _, err := os.Stat(filepath.Join(dir, genName(l.published))); err != nil {
			return l, fmt.Errorf("%s: %s names %s, which is missing: %w", dir, currentFile, genName(l.published), err)
		}
	}
	return l, nil
}

// publish makes generation n the published one, durably.
func publish(dir string, n int) error {
	tmp := filepath.Join(dir, currentFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(genName(n) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// generation is one open generation of the fold: its directory and the
// plugin process serving its store.
type generation struct {
	n   int
	dir string
	h   Handle

	// mu guards what the store last committed: the session writes it as
	// batches commit, readers and the status read it.
	mu     sync.Mutex
	cursor uint64
	meta   map[string][]byte

	// loading: the store is in a bulk load, ended before it is published.
	// The session's goroutine only.
	loading bool

	// pins counts the exports reading this generation; publish waits for
	// them (a while) before it closes the generation it replaced.
	pins sync.WaitGroup
}

// committed is the cursor and a copy of the metadata the store last
// committed.
func (g *generation) committed() (uint64, map[string][]byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cursor, maps.Clone(g.meta)
}

// committedCursor is the cursor the store last committed.
func (g *generation) committedCursor() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cursor
}

// commit records that the store committed cursor and meta (upserted).
func (g *generation) commit(cursor uint64, meta map[string][]byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cursor = cursor
	if len(meta) > 0 && g.meta == nil {
		g.meta = map[string][]byte{}
	}
	maps.Copy(g.meta, meta)
}

// generations are a fold's open generations: the directory layout, the
// processes serving them, which one readers see and which one the watch
// feeds. Its lock guards only the published and target pointers; each
// generation guards its own committed state.
type generations struct {
	dir         string
	launch      Launcher
	storeConfig []byte
	log         *slog.Logger

	// Owned by the session goroutine (and open, before it runs).
	opened bool
	lock   *os.File // the directory's lock, held from open
	layout layout
	shadow *generation // open shadow, when layout.shadow > 0

	mu     sync.RWMutex
	pub    *generation // published: what readers see
	target *generation // what the watch feeds: pub, or a shadow

	// onPublish is told of every new published generation object (a
	// publish, a store reopened after its plugin died, nil at close),
	// after mu is released.
	onPublish func(*generation)
}

func (s *generations) notify(g *generation) {
	if s.onPublish != nil {
		s.onPublish(g)
	}
}

// open reads the directory (creating it when missing) and clears what a
// crash left behind; its errors name the path. Later calls do nothing.
func (s *generations) open() error {
	if s.opened {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	lock, err := lockDir(s.dir)
	if err != nil {
		return err
	}
	l, err := scanDir(s.dir)
	if err != nil {
		lock.Close()
		return err
	}
	s.layout, s.opened, s.lock = l, true, lock
	return nil
}

// lockFile is held, with an exclusive flock, by the one process using a
// fold's directory.
const lockFile = "LOCK"

// lockDir takes dir's lock, or says that another process holds it.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another process (a running service?)", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// unlock releases the directory lock open took; the fold can be opened
// again.
func (s *generations) unlock() {
	if s.lock != nil {
		s.lock.Close()
		s.lock, s.opened = nil, false
	}
}

// current returns the published and the target generation; either may be
// nil.
func (s *generations) current() (pub, target *generation) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pub, s.target
}

// published returns the published generation, or nil.
func (s *generations) published() *generation {
	pub, _ := s.current()
	return pub
}

// pin returns the published generation, held open for an export until
// release is called; ErrNotReady when there is none.
func (s *generations) pin() (g *generation, release func(), err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.pub == nil {
		return nil, nil, ErrNotReady
	}
	g = s.pub
	g.pins.Add(1)
	return g, g.pins.Done, nil
}

// pinWait bounds how long publish waits for the exports of the generation
// it replaced before closing it under them (they then fail).
const pinWait = time.Minute

// unpinned waits until no export reads g, for at most pinWait.
func (g *generation) unpinned() bool {
	done := make(chan struct{})
	go func() { g.pins.Wait(); close(done) }()
	t := time.NewTimer(pinWait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// dead returns the published generation or tgt when its plugin has died,
// or nil.
func (s *generations) dead(tgt *generation) *generation {
	for _, g := range []*generation{s.published(), tgt} {
		if g != nil && g.h.Exited() {
			return g
		}
	}
	return nil
}

// openGen launches a plugin for generation n and opens its store.
func (s *generations) openGen(ctx context.Context, n int) (*generation, error) {
	dir := filepath.Join(s.dir, genName(n))
	h, err := s.launch(ctx)
	if err != nil {
		return nil, err
	}
	st, err := h.Open(ctx, dir, s.storeConfig)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(sctx)
		return nil, fmt.Errorf("open store in %s: %w", dir, err)
	}
	return &generation{n: n, dir: dir, h: h, cursor: st.Cursor, meta: st.Meta, loading: st.Loading}, nil
}

// alive returns g if its plugin still runs, or reopens generation n.
func (s *generations) alive(ctx context.Context, g *generation, n int) (*generation, error) {
	if g != nil && !g.h.Exited() {
		return g, nil
	}
	if g != nil {
		s.log.Warn("store plugin died; restarting it", "generation", n)
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = g.h.Shutdown(sctx)
		cancel()
	}
	return s.openGen(ctx, n)
}

// prepare makes sure the published generation is open (for readers; ready
// is run on it first) and returns the generation the watch should feed: a
// shadow when one is being built (a first one for a fold with none), else
// the published one.
func (s *generations) prepare(ctx context.Context, ready func(context.Context, *generation) error) (*generation, error) {
	if s.layout.published > 0 {
		g, err := s.alive(ctx, s.published(), s.layout.published)
		if err != nil {
			return nil, err
		}
		if err := ready(ctx, g); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.pub = g
		s.mu.Unlock()
		s.notify(g)
	}
	if s.layout.published == 0 && s.layout.shadow == 0 {
		s.layout.shadow = 1
	}
	tgt := s.published()
	if s.layout.shadow > 0 {
		g, err := s.alive(ctx, s.shadow, s.layout.shadow)
		if err != nil {
			return nil, err
		}
		s.shadow, tgt = g, g
	}
	s.mu.Lock()
	s.target = tgt
	s.mu.Unlock()
	return tgt, nil
}

// abandon gives tgt up as a resume point: the next prepare opens a fresh
// shadow, while readers keep the published generation. A shadow given up is
// closed and its directory removed.
func (s *generations) abandon(ctx context.Context, tgt *generation) error {
	next := max(s.layout.published, s.layout.shadow) + 1
	if tgt != s.published() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := tgt.h.Shutdown(sctx)
		cancel()
		s.shadow = nil
		if err != nil {
			s.log.Warn("closing abandoned shadow", "err", err)
		}
		if err := os.RemoveAll(tgt.dir); err != nil {
			return err
		}
	}
	s.layout.shadow = next
	return nil
}

// fresh opens a new, empty generation after every other, as the shadow,
// for an import into a fold that is not running; a shadow a crash left
// behind is removed first. The generation is not the target of any watch.
func (s *generations) fresh(ctx context.Context) (*generation, error) {
	if s.layout.shadow > 0 {
		if err := os.RemoveAll(filepath.Join(s.dir, genName(s.layout.shadow))); err != nil {
			return nil, err
		}
	}
	n := max(s.layout.published, s.layout.shadow) + 1
	g, err := s.openGen(ctx, n)
	if err != nil {
		return nil, err
	}
	s.layout.shadow, s.shadow = n, g
	return g, nil
}

// discard closes a generation fresh opened and removes it.
func (s *generations) discard(g *generation) error {
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.h.Shutdown(sctx); err != nil {
		s.log.Warn("closing a discarded generation", "generation", g.n, "err", err)
	}
	s.layout.shadow, s.shadow = 0, nil
	return os.RemoveAll(g.dir)
}

// publish swaps a caught-up shadow in for readers, durably (CURRENT), and
// drops the old generation.
func (s *generations) publish(ctx context.Context, g *generation) error {
	if err := publish(s.dir, g.n); err != nil {
		return fmt.Errorf("publish generation %d: %w", g.n, err)
	}
	s.mu.Lock()
	old := s.pub
	s.pub, s.target = g, g
	s.mu.Unlock()
	s.notify(g)
	s.layout.published, s.layout.shadow, s.shadow = g.n, 0, nil
	s.log.Info("published generation", "generation", g.n, "cursor", g.committedCursor())
	if old != nil {
		if !old.unpinned() {
			s.log.Warn("closing the replaced generation under an export that outlasted the wait", "generation", old.n, "wait", pinWait)
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := old.h.Shutdown(sctx); err != nil {
			s.log.Warn("closing old generation", "generation", old.n, "err", err)
		}
		if err := os.RemoveAll(old.dir); err != nil {
			s.log.Warn("removing old generation", "generation", old.n, "err", err)
		}
	}
	return nil
}

// closeAll shuts every open generation down and releases the directory.
func (s *generations) closeAll() {
	defer s.unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.mu.Lock()
	pub, shadow := s.pub, s.shadow
	s.pub, s.target = nil, nil
	s.mu.Unlock()
	s.notify(nil)
	s.shadow = nil
	for _, g := range []*generation{shadow, pub} {
		if g != nil {
			if err := g.h.Shutdown(ctx); err != nil {
				s.log.Warn("closing store", "generation", g.n, "err", err)
			}
		}
	}
}
