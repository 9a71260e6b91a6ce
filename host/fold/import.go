package fold

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/host/watch"
)

// ErrArtifactRefused is wrapped by the errors about an artifact that is
// intact but not of this fold: another bucket, stream identity, scope or
// transform chain, or a cursor the stream can no longer continue from. A
// damaged artifact is an artifact.ErrCorrupt error instead.
var ErrArtifactRefused = errors.New("artifact refused")

// ErrNoArtifact is returned by a Source that has no artifact to offer; a
// fold bootstrapping from it re-lists the bucket without a warning.
var ErrNoArtifact = errors.New("no artifact")

// Source opens the artifact a fold bootstraps from (Config.Bootstrap). It
// returns an error wrapping ErrNoArtifact when there is none yet.
type Source func(ctx context.Context) (io.ReadCloser, error)

// MetaImport marks a generation an import is filling: set by its first
// batch, emptied by the last, which also commits the artifact's cursor. A
// generation found with it set was cut off mid-import and is discarded.
const MetaImport = "slipstream.import"

// Import fills a new generation of a fold that is not running from the
// artifact r, and publishes it: the next Run resumes at the artifact's
// cursor, so only the tail comes from the stream. The manifest is checked
// against the fold and the bucket's stream before the first record is
// applied, the content hash before the generation is published. Whatever
// is refused, the published generation is left as it was.
func (f *Fold) Import(ctx context.Context, r io.Reader) (m artifact.Manifest, err error) {
	if err := f.gens.open(); err != nil {
		return m, fmt.Errorf("fold %s: %w", f.cfg.Name, err)
	}
	defer f.gens.closeAll()
	id, pos, err := watch.Describe(ctx, f.js, f.cfg.Bucket)
	if err != nil {
		return m, err
	}
	g, err := f.gens.fresh(ctx)
	if err != nil {
		return m, err
	}
	m, _, err = f.importInto(ctx, g, r, f.wantMeta(id), pos)
	if err == nil {
		err = f.endLoad(ctx, g)
	}
	if err != nil {
		if derr := f.gens.discard(g); derr != nil {
			f.log.Warn("removing the generation of a failed import", "generation", g.n, "err", derr)
		}
		return m, err
	}
	// g is complete: if the publish fails, the next run resumes it as a
	// shadow, so it is not discarded (nor is a directory CURRENT may name).
	return m, f.gens.publish(ctx, g)
}

// importInto fills g, which must be empty, from the artifact r, for a fold
// that wants want of a stream holding pos. wrote reports whether anything
// was committed to g (which must then be discarded if err is not nil).
//
// A feed goroutine reads and decodes the artifact into batches while this
// one hands the batch before to the store (down its apply pipe when it has
// one, so that the store applies a batch while the next is decoded and
// sent; importpipe.go). The first batch marks g with MetaImport; only the
// last, made once the reader verified the artifact's counts and content
// hash, clears the mark and commits the artifact's cursor.
func (f *Fold) importInto(ctx context.Context, g *generation, r io.Reader, want map[string][]byte, pos watch.Position) (m artifact.Manifest, wrote bool, err error) {
	start := time.Now()
	defer func() { f.cfg.Metrics.artifactDone(f.cfg.Name, "import", start, m.Records, err) }()
	if cursor, meta := g.committed(); cursor != 0 || len(meta) != 0 {
		return m, false, fmt.Errorf("import: generation %d is not empty (cursor %d)", g.n, cursor)
	}
	ar, err := artifact.NewReader(r)
	if err != nil {
		return m, false, fmt.Errorf("import: %w", err)
	}
	m = ar.Manifest()
	if err := checkManifest(m, want, pos); err != nil {
		return m, false, err
	}
	if !g.loading {
		f.beginLoad(ctx, g)
	}
	feed := f.startImportFeed(ar, m.Cursor)
	defer feed.stop()
	sink := f.newImportSink(ctx, g)
	defer sink.close()
	first, final := true, false
	for b := range feed.full {
		cursor := uint64(0)
		switch {
		case b.last:
			m = ar.Manifest() // now with the verified trailer
			b.meta = maps.Clone(want)
			b.meta[MetaImport] = nil
			if !m.SyncedAt.IsZero() {
				b.meta[MetaSyncedAt] = []byte(m.SyncedAt.UTC().Format(time.RFC3339Nano))
			}
			cursor, final = m.Cursor, true
		case first:
			b.meta = map[string][]byte{MetaImport: []byte("1")}
		}
		first = false
		wrote = true
		if err := sink.apply(b, cursor); err != nil {
			return m, wrote, err
		}
		feed.recycle(b)
	}
	if err := feed.wait(); err != nil {
		return m, wrote, fmt.Errorf("import: %w", err)
	}
	if !final {
		return m, wrote, fmt.Errorf("import: the artifact's reader stopped before its end")
	}
	if err := sink.drain(); err != nil {
		return m, wrote, err
	}
	f.log.Info("imported an artifact", "generation", g.n, "cursor", m.Cursor, "records", m.Records,
		"took", time.Since(start).Round(time.Millisecond).String())
	return m, wrote, nil
}

// checkManifest refuses an artifact that is not of the fold wanting want,
// or whose cursor the stream holding pos cannot continue from.
func checkManifest(m artifact.Manifest, want map[string][]byte, pos watch.Position) error {
	have := map[string]string{
		MetaBucket:     m.Bucket,
		MetaStream:     m.Stream,
		MetaCreated:    m.StreamCreated.UTC().Format(time.RFC3339Nano),
		MetaScope:      strings.Join(m.Filters, "\n"),
		MetaTransforms: m.TransformDigest,
	}
	for _, c := range metaChecks {
		v, ok := have[c.key]
		if ok && v != string(want[c.key]) {
			return fmt.Errorf("%w: it is a fold of another %s (%q; this fold's is %q)", ErrArtifactRefused, c.what, v, want[c.key])
		}
	}
	if m.Cursor == 0 {
		return fmt.Errorf("%w: its cursor is 0", ErrArtifactRefused)
	}
	switch err := watch.CheckCursor(m.Cursor, pos.First, pos.Last); {
	case errors.Is(err, watch.ErrCursorExpired):
		return fmt.Errorf("%w: the stream can no longer continue from its cursor %d: retention removed sequences after it (the stream's first is now %d)",
			ErrArtifactRefused, m.Cursor, pos.First)
	case err != nil:
		return fmt.Errorf("%w: its cursor %d is past the stream's last sequence %d", ErrArtifactRefused, m.Cursor, pos.Last)
	}
	return nil
}
