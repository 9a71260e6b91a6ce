package fold

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/sdk"
)

// The import pipeline (importInto): a feed goroutine decodes the artifact
// into batches, this package's only copy of its records; the importing
// goroutine hands each to an importSink, which sends it down the store's
// apply pipe and moves on, or applies it and waits. Memory stays at
// importFeedBatches batches on this side, whatever the artifact's size.

// Import batch bounds. On the apply pipe small batches cost the store
// no more than large ones (a 300k-key import ran as fast in batches of 4k
// records as of 16k or 64k, BENCHMARKS.md), and the host holds a few of
// them at once: its peak RSS grew with the batch, by about 35 MiB at 16k
// records of 250 bytes.
var (
	importBatchEntries = 4 << 10
	importBatchBytes   = 1 << 20
)

const (
	// importFeedBatches circulate between the feed and the sink: one is
	// filled while the one before is sent.
	importFeedBatches = 2
	// importPipeAhead is how many batches sent down a pipe may wait for
	// their commit when the next is sent: the store has one to apply and
	// one received while the feed fills another.
	importPipeAhead = 2
	// importSlab is the size of the buffers a batch copies records into;
	// a larger record gets a buffer of its own, not kept.
	importSlab = 256 << 10
)

// importBatch holds records copied out of the artifact reader's buffer,
// which its next chunk overwrites.
type importBatch struct {
	muts  []sdk.Mutation
	slabs [][]byte // reused from batch to batch
	used  int      // slabs holding this batch's bytes; the last is being filled
	size  int      // bytes of keys and values
	meta  map[string][]byte
	last  bool // the artifact's last batch, read after the reader verified it
}

func (b *importBatch) add(rec artifact.Record) {
	buf := b.alloc(len(rec.Key) + len(rec.Value))
	k := copy(buf, rec.Key)
	copy(buf[k:], rec.Value)
	b.muts = append(b.muts, sdk.Mutation{Op: sdk.OpPut, Revision: rec.Revision,
		Key: buf[:k:k], Value: buf[k:]})
	b.size += len(buf)
}

// alloc returns n bytes of the batch's slabs, or of a buffer of their own
// when n is more than a slab holds.
func (b *importBatch) alloc(n int) []byte {
	if n > importSlab {
		return make([]byte, n)
	}
	if b.used == 0 || len(b.slabs[b.used-1])+n > importSlab {
		if b.used == len(b.slabs) {
			b.slabs = append(b.slabs, make([]byte, 0, importSlab))
		}
		b.slabs[b.used] = b.slabs[b.used][:0]
		b.used++
	}
	s := b.slabs[b.used-1]
	at := len(s)
	b.slabs[b.used-1] = s[:at+n]
	return s[at : at+n : at+n]
}

// reset empties b for reuse; a store keeps nothing of a batch's bytes after
// Apply returns, nor a pipe after Send returns (it sends a packed copy).
func (b *importBatch) reset() {
	clear(b.muts) // no hold on an outsized record's buffer
	b.muts, b.used, b.size, b.meta, b.last = b.muts[:0], 0, 0, nil, false
}

func (b *importBatch) full() bool {
	return len(b.muts) >= importBatchEntries || b.size >= importBatchBytes
}

// importFeed decodes an artifact into batches on its own goroutine.
type importFeed struct {
	full    chan *importBatch // filled batches, in order; closed when the feed ends
	free    chan *importBatch // batches to fill
	done    chan struct{}     // closed by stop: no more batches are wanted
	ended   chan struct{}     // closed once the goroutine has returned
	stopped bool
	err     error // why the feed ended before the last batch; read after ended
}

// startImportFeed starts reading ar, whose manifest names cursor, into
// batches. The last batch is marked once ar.Next has returned io.EOF, that
// is once the artifact verified.
func (f *Fold) startImportFeed(ar *artifact.Reader, cursor uint64) *importFeed {
	fd := &importFeed{
		full: make(chan *importBatch), free: make(chan *importBatch, importFeedBatches),
		done: make(chan struct{}), ended: make(chan struct{}),
	}
	for range importFeedBatches {
		fd.free <- &importBatch{}
	}
	go func() {
		var err error
		defer close(fd.ended)
		defer close(fd.full)
		defer func() { fd.err = err }()
		defer f.contain("import reader", &err)
		err = fd.run(ar, cursor)
	}()
	return fd
}

func (fd *importFeed) run(ar *artifact.Reader, cursor uint64) error {
	b, ok := fd.take()
	for ok {
		rec, err := ar.Next()
		if err == io.EOF {
			b.last = true
			fd.put(b)
			return nil
		}
		if err != nil {
			return err
		}
		if rec.Revision == 0 || rec.Revision > cursor {
			return fmt.Errorf("%w: record %q has revision %d, outside the artifact's 1 to %d",
				artifact.ErrCorrupt, rec.Key, rec.Revision, cursor)
		}
		b.add(rec)
		if b.full() {
			if !fd.put(b) {
				return nil
			}
			b, ok = fd.take()
		}
	}
	return nil
}

func (fd *importFeed) take() (*importBatch, bool) {
	select {
	case b := <-fd.free:
		return b, true
	case <-fd.done:
		return nil, false
	}
}

func (fd *importFeed) put(b *importBatch) bool {
	select {
	case fd.full <- b:
		return true
	case <-fd.done:
		return false
	}
}

// recycle gives a batch the sink is done with back to the feed.
func (fd *importFeed) recycle(b *importBatch) {
	b.reset()
	fd.free <- b // never blocks: it holds every batch
}

// wait waits for the feed to end and returns why it ended early, if it did.
func (fd *importFeed) wait() error {
	<-fd.ended
	return fd.err
}

// stop ends the feed, if it has not ended, and waits for its goroutine. A
// read under way finishes first.
func (fd *importFeed) stop() {
	if !fd.stopped {
		fd.stopped = true
		close(fd.done)
	}
	<-fd.ended
}

// importSink commits an import's batches to g in order: down the store's
// apply pipe when it has one, else one Apply at a time.
type importSink struct {
	ctx   context.Context
	g     *generation
	piper Piper
	pipe  pluginhost.BatchPipe
	sent  []sentImport // sent down pipe and not yet committed, oldest first
}

type sentImport struct {
	cursor uint64
	meta   map[string][]byte
}

func (f *Fold) newImportSink(ctx context.Context, g *generation) *importSink {
	s := &importSink{ctx: ctx, g: g}
	if p, ok := g.h.(Piper); ok && !f.cfg.hooks.CursorBeforeApply {
		s.piper = p
	}
	return s
}

// apply commits b at cursor, or sends it to be committed: when it returns,
// b may be reused, and every batch before it that is no longer waited for
// has committed.
func (s *importSink) apply(b *importBatch, cursor uint64) error {
	sb := &sdk.Batch{Mutations: b.muts, Cursor: cursor, Meta: b.meta}
	if s.piper == nil {
		actx, cancel := context.WithTimeout(s.ctx, applyTimeout)
		defer cancel()
		if err := s.g.h.Apply(actx, sb); err != nil {
			return s.applyError(err)
		}
		s.g.commit(cursor, b.meta)
		return nil
	}
	if s.pipe == nil {
		p, err := s.piper.Pipe(s.ctx)
		if err != nil {
			return s.applyError(err)
		}
		s.pipe = p
	}
	s.sent = append(s.sent, sentImport{cursor: cursor, meta: b.meta})
	if err := s.pipe.Send(sb); err != nil {
		// Why the plugin ended the pipe is the answer to the first batch
		// it did not commit.
		for len(s.sent) > 0 {
			if werr := s.waitOne(); werr != nil {
				return werr
			}
		}
		return s.applyError(err)
	}
	for len(s.sent) > importPipeAhead {
		if err := s.waitOne(); err != nil {
			return err
		}
	}
	return nil
}

// waitOne waits for the oldest batch sent to commit, for at most
// applyTimeout, and records it. A failure breaks the pipe for good.
func (s *importSink) waitOne() error {
	var timedOut atomic.Bool
	timer := time.AfterFunc(applyTimeout, func() { timedOut.Store(true); s.pipe.Close() })
	_, err := s.pipe.Wait()
	timer.Stop()
	if err != nil {
		s.pipe.Close()
		s.sent = nil
		if timedOut.Load() {
			err = fmt.Errorf("no commit within %v: %w", applyTimeout, context.DeadlineExceeded)
		}
		return s.applyError(err)
	}
	c := s.sent[0]
	s.sent = s.sent[1:]
	s.g.commit(c.cursor, c.meta)
	return nil
}

// drain waits until every batch sent has committed.
func (s *importSink) drain() error {
	for len(s.sent) > 0 {
		if err := s.waitOne(); err != nil {
			return err
		}
	}
	return nil
}

// close ends the pipe; batches sent and not waited for may or may not be
// applied (the generation is then discarded, or found marked).
func (s *importSink) close() {
	if s.pipe != nil {
		s.pipe.Close()
		s.pipe = nil
	}
}

func (s *importSink) applyError(err error) error {
	return fmt.Errorf("import: store apply (generation %d): %w%s", s.g.n, err, pluginCause(s.g.h, err))
}
