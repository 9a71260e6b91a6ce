package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync/atomic"
	"time"

	"github.com/slipstreamkv/slipstream/internal/storepb"
	"github.com/slipstreamkv/slipstream/sdk"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrPluginUnavailable is returned by calls on a plugin whose process has
// died or stopped answering. The host restarts such a plugin.
var ErrPluginUnavailable = errors.New("store plugin unavailable")

// The sdk.Store methods of Plugin: each crosses the process boundary.

// Open opens the store kept in dir (see sdk.Store).
func (p *Plugin) Open(ctx context.Context, dir string, config []byte) (sdk.State, error) {
	resp, err := p.rpc.Open(ctx, &storepb.OpenRequest{Dir: dir, Config: config})
	if err != nil {
		return sdk.State{}, fromStatus(err)
	}
	meta := resp.GetMeta()
	if meta == nil {
		meta = map[string][]byte{}
	}
	return sdk.State{Cursor: resp.GetCursor(), Meta: meta, Loading: resp.GetLoading()}, nil
}

// Apply commits b: in one message, or streamed in chunks when it is larger
// than storepb.ApplyChunkBytes (the plugin commits it only after the last
// chunk arrives, so a broken stream applies nothing).
func (p *Plugin) Apply(ctx context.Context, b *sdk.Batch) error {
	size := 0
	for i := range b.Mutations {
		size += len(b.Mutations[i].Key) + len(b.Mutations[i].Value) + 16
	}
	if size <= storepb.ApplyChunkBytes {
		req := request(b.Mutations)
		req.Cursor, req.Meta, req.Last = b.Cursor, b.Meta, true
		_, err := p.rpc.Apply(ctx, req)
		return fromStatus(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.rpc.ApplyStream(ctx)
	if err != nil {
		return fromStatus(err)
	}
	if err := chunks(b, stream.Send); err != nil {
		if errors.Is(err, io.EOF) {
			// The plugin closed the stream early; its status says why.
			_, err = stream.CloseAndRecv()
		}
		return fromStatus(err)
	}
	_, err = stream.CloseAndRecv()
	return fromStatus(err)
}

// chunks sends b as requests of about storepb.ApplyChunkBytes of payload
// each; only the last carries the cursor and metadata, and is marked last.
func chunks(b *sdk.Batch, send func(*storepb.ApplyRequest) error) error {
	start, size := 0, 0
	for i := range b.Mutations {
		size += len(b.Mutations[i].Key) + len(b.Mutations[i].Value) + 16
		if size >= storepb.ApplyChunkBytes && i < len(b.Mutations)-1 {
			if err := send(request(b.Mutations[start : i+1])); err != nil {
				return err
			}
			start, size = i+1, 0
		}
	}
	req := request(b.Mutations[start:])
	req.Cursor, req.Meta, req.Last = b.Cursor, b.Meta, true
	return send(req)
}

// request is an ApplyRequest carrying ms, packed.
func request(ms []sdk.Mutation) *storepb.ApplyRequest {
	return &storepb.ApplyRequest{Packed: storepb.Pack(len(ms), func(i int) (storepb.Op, []byte, []byte, uint64) {
		m := &ms[i]
		return wireOp(m.Op), m.Key, m.Value, m.Revision
	})}
}

// wireOp is op on the wire. A batch holds puts and deletes only (the fold
// sends a purge as a delete); anything else goes as OP_UNSPECIFIED, which
// the plugin refuses, so the batch fails whole rather than change meaning.
func wireOp(op sdk.Op) storepb.Op {
	switch op {
	case sdk.OpPut:
		return storepb.Op_OP_PUT
	case sdk.OpDelete:
		return storepb.Op_OP_DELETE
	}
	return storepb.Op_OP_UNSPECIFIED
}

// Get returns the entry for key, or sdk.ErrNotFound.
func (p *Plugin) Get(ctx context.Context, key []byte) (sdk.Entry, error) {
	resp, err := p.rpc.Get(ctx, &storepb.GetRequest{Key: key})
	if err != nil {
		return sdk.Entry{}, fromStatus(err)
	}
	if !resp.GetFound() {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	return sdk.Entry{Key: key, Value: resp.GetValue(), Revision: resp.GetRevision()}, nil
}

// Scan streams the entries of r to fn (see sdk.Store).
func (p *Plugin) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	return p.scan(ctx, 0, r, fn)
}

// scan streams the entries of r to fn: of the live store (snapshot 0) or
// of the open view snapshot names.
func (p *Plugin) scan(ctx context.Context, snapshot uint64, r sdk.Range, fn func(sdk.Entry) error) error {
	if r.Limit < 0 {
		return fmt.Errorf("scan: negative limit %d", r.Limit)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.rpc.Scan(ctx, &storepb.ScanRequest{
		Prefix: r.Prefix, Start: r.Start, End: r.End, After: r.After,
		Limit: uint64(r.Limit), KeysOnly: r.KeysOnly, Snapshot: snapshot, Packed: true,
	})
	if err != nil {
		return fromStatus(err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fromStatus(err)
		}
		// A plugin that predates packed scans sends entries.
		for _, e := range resp.GetEntries() {
			if err := fn(sdk.Entry{Key: e.GetKey(), Value: e.GetValue(), Revision: e.GetRevision()}); err != nil {
				return err
			}
		}
		if p := resp.GetPacked(); p != nil {
			if _, err := p.Check(); err != nil {
				return fmt.Errorf("scan: the plugin sent malformed entries: %w", err)
			}
			err := p.Each(func(key, value []byte, revision uint64) error {
				if r.KeysOnly {
					value = nil
				}
				return fn(sdk.Entry{Key: key, Value: value, Revision: revision})
			})
			if err != nil {
				return err
			}
		}
	}
}

// Stats reports the number of keys and bytes the store holds.
func (p *Plugin) Stats(ctx context.Context) (sdk.Stats, error) {
	resp, err := p.rpc.Stats(ctx, &storepb.StatsRequest{})
	if err != nil {
		return sdk.Stats{}, fromStatus(err)
	}
	return sdk.Stats{Keys: resp.GetKeys(), Bytes: resp.GetBytes(), DiskBytes: resp.GetDiskBytes()}, nil
}

// Close closes the store; the process keeps running until Kill or Shutdown.
func (p *Plugin) Close(ctx context.Context) error {
	_, err := p.rpc.Close(ctx, &storepb.CloseRequest{})
	return fromStatus(err)
}

// Loader returns the store's bulk-load calls when it implements sdk.Loader.
func (p *Plugin) Loader() (sdk.Loader, bool) {
	if !p.has(storepb.CapBulkLoad) {
		return nil, false
	}
	return loader{p}, true
}

// Compacter returns the store's Compact when it implements sdk.Compacter.
func (p *Plugin) Compacter() (sdk.Compacter, bool) {
	if !p.has(storepb.CapCompact) {
		return nil, false
	}
	return compacter{p}, true
}

// Snapshotter returns the store's read views when it implements
// sdk.Snapshotter.
func (p *Plugin) Snapshotter() (sdk.Snapshotter, bool) {
	if !p.has(storepb.CapSnapshot) {
		return nil, false
	}
	return snapshotter{p}, true
}

type loader struct{ p *Plugin }

func (l loader) BeginLoad(ctx context.Context) error {
	_, err := l.p.rpc.BeginLoad(ctx, &storepb.LoadRequest{})
	return fromStatus(err)
}

func (l loader) EndLoad(ctx context.Context) error {
	_, err := l.p.rpc.EndLoad(ctx, &storepb.LoadRequest{})
	return fromStatus(err)
}

type compacter struct{ p *Plugin }

func (c compacter) Compact(ctx context.Context) error {
	_, err := c.p.rpc.Compact(ctx, &storepb.CompactRequest{})
	return fromStatus(err)
}

type snapshotter struct{ p *Plugin }

// Snapshot opens a view in the plugin; the view lives there, named by an
// id, until its Close or the store's.
func (s snapshotter) Snapshot(ctx context.Context) (sdk.Snapshot, error) {
	resp, err := s.p.rpc.OpenSnapshot(ctx, &storepb.SnapshotRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	meta := resp.GetMeta()
	if meta == nil {
		meta = map[string][]byte{}
	}
	return &snapshot{p: s.p, id: resp.GetId(), state: sdk.State{Cursor: resp.GetCursor(), Meta: meta}}, nil
}

// snapshotCloseTimeout bounds a view's Close, which has no context of its
// own: a plugin that does not answer is given up on.
const snapshotCloseTimeout = 30 * time.Second

// snapshot is a view open in the plugin. Scan reads it as Plugin.Scan
// reads the store.
type snapshot struct {
	p      *Plugin
	id     uint64
	state  sdk.State
	closed atomic.Bool
}

func (s *snapshot) State() sdk.State {
	st := s.state
	st.Meta = maps.Clone(st.Meta)
	return st
}

func (s *snapshot) Scan(ctx context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	if s.closed.Load() {
		return fmt.Errorf("%w: snapshot %d is closed", sdk.ErrClosed, s.id)
	}
	return s.p.scan(ctx, s.id, r, fn)
}

// Close closes the view in the plugin; a second Close does nothing. A view
// that the plugin closed with its store is closed: not an error.
func (s *snapshot) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotCloseTimeout)
	defer cancel()
	_, err := s.p.rpc.CloseSnapshot(ctx, &storepb.SnapshotRequest{Id: s.id})
	if err = fromStatus(err); errors.Is(err, sdk.ErrClosed) {
		return nil
	}
	return err
}

// fromStatus restores the sentinel errors a plugin returned.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.NotFound:
		return sdk.ErrNotFound
	case codes.FailedPrecondition:
		return fmt.Errorf("%w: %s", sdk.ErrClosed, st.Message())
	case codes.Canceled:
		return fmt.Errorf("%w: %s", context.Canceled, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%w: %s", context.DeadlineExceeded, st.Message())
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrPluginUnavailable, st.Message())
	}
	return errors.New(st.Message())
}
