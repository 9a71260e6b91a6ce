package fold

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Export writes an artifact of the published generation to w: every entry
// it holds at one committed cursor, which the manifest names, while the fold
// goes on applying. A store with consistent views (sdk.Snapshotter) is read
// through one; any other with the fold's applies paused while it is read
// (they queue, and the fold catches up once the export ends). A rebuild
// that publishes another generation meanwhile waits (a while) for the
// export to end. A store that sends nothing for the read timeout (a hung
// plugin) ends the export with ErrStoreUnavailable; the time the writer
// takes does not count. producer names the program in the manifest.
func (f *Fold) Export(ctx context.Context, w io.Writer, producer string) (m artifact.Manifest, err error) {
	start := time.Now()
	defer func() { f.cfg.Metrics.artifactDone(f.cfg.Name, "export", start, m.Records, err) }()
	g, release, err := f.gens.pin()
	if err != nil {
		return m, err
	}
	defer release()
	if g.h.Exited() {
		return m, exitedError(g)
	}
	v, err := f.view(ctx, g)
	if err != nil {
		return m, readError(err)
	}
	defer func() {
		if errors.Is(err, ErrStoreUnavailable) {
			// A store that stopped answering would hold the export in
			// Close for Close's own bound as well.
			go v.Close()
			return
		}
		v.Close()
	}()
	head, err := manifestOf(v.State(), producer)
	if err != nil {
		return m, fmt.Errorf("generation %d: %w", g.n, err)
	}
	aw, err := artifact.NewWriter(w, head)
	if err != nil {
		return m, err
	}
	err = f.scanRead(ctx, v.Scan, sdk.Range{}, func(e sdk.Entry) error {
		return aw.Add(artifact.Record{Key: e.Key, Value: e.Value, Revision: e.Revision})
	})
	if err != nil {
		return m, fmt.Errorf("export generation %d: %w", g.n, readError(err))
	}
	m, err = aw.Close()
	if err == nil {
		f.log.Info("exported", "generation", g.n, "cursor", m.Cursor, "records", m.Records,
			"took", time.Since(start).Round(time.Millisecond).String())
	}
	return m, err
}

// view opens a consistent view of g: the store's own (sdk.Snapshotter),
// or else the live store with the fold's applies paused until the view is
// closed.
func (f *Fold) view(ctx context.Context, g *generation) (sdk.Snapshot, error) {
	if s, ok := g.h.Snapshotter(); ok {
		var v sdk.Snapshot
		err := f.storeRead(ctx, func(ctx context.Context) (err error) {
			v, err = s.Snapshot(ctx)
			return err
		})
		return v, err
	}
	f.log.Info("the store has no consistent views; applies pause while it is exported", "generation", g.n)
	f.applyGate.Lock()
	cursor, meta := g.committed()
	return &pausedView{h: g.h, st: sdk.State{Cursor: cursor, Meta: meta}, resume: f.applyGate.Unlock}, nil
}

// pausedView is a store read while no batch is applied to it.
type pausedView struct {
	h      sdk.Store
	st     sdk.State
	once   sync.Once
	resume func()
}

func (v *pausedView) State() sdk.State { return v.st }

func (v *pausedView) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	return v.h.Scan(ctx, r, fn)
}

func (v *pausedView) Close() error {
	v.once.Do(v.resume)
	return nil
}

// manifestOf is the header of an artifact of a generation in state st: what
// its host metadata says it is a fold of, and its cursor.
func manifestOf(st sdk.State, producer string) (artifact.Manifest, error) {
	meta := st.Meta
	if st.Cursor == 0 || string(meta[MetaFormat]) != "1" || len(meta[MetaBucket]) == 0 {
		return artifact.Manifest{}, fmt.Errorf("the store holds no complete fold to export (cursor %d, format %q)", st.Cursor, meta[MetaFormat])
	}
	created, err := time.Parse(time.RFC3339Nano, string(meta[MetaCreated]))
	if err != nil {
		return artifact.Manifest{}, fmt.Errorf("stored stream identity %q: %w", meta[MetaCreated], err)
	}
	var synced time.Time
	if raw := meta[MetaSyncedAt]; len(raw) > 0 {
		if synced, err = time.Parse(time.RFC3339Nano, string(raw)); err != nil {
			return artifact.Manifest{}, fmt.Errorf("stored caught-up time %q: %w", raw, err)
		}
	}
	return artifact.Manifest{
		Bucket:          string(meta[MetaBucket]),
		Stream:          string(meta[MetaStream]),
		StreamCreated:   created,
		Filters:         splitScope(meta[MetaScope]),
		TransformDigest: string(meta[MetaTransforms]),
		Cursor:          st.Cursor,
		Producer:        producer,
		SyncedAt:        synced,
	}, nil
}

// splitScope is the filter list a MetaScope value joins.
func splitScope(raw []byte) []string {
	if len(raw) == 0 {
		return nil
	}
	return strings.Split(string(raw), "\n")
}
