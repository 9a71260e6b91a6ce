package sdk

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/hashicorp/go-plugin"
	"github.com/slipstreamkv/slipstream/internal/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcPlugin is the plugin's half of the go-plugin binding: it serves the
// Store service for one store.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	store Store
	srv   *server // set once go-plugin has called GRPCServer
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	p.srv = newServer(p.store)
	storepb.RegisterStoreServer(s, p.srv)
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("a store plugin is not a client of the host")
}

// scanChunkBytes bounds the entries of one streamed Scan message (unless
// one entry alone is larger); scanChunkEntries bounds their number too when
// they go as one Entry message each, not packed.
const (
	scanChunkBytes   = 1 << 20
	scanChunkEntries = 1024
)

// server adapts a Store to the gRPC service. It enforces the lifecycle (no
// call before Open or after Close) and serializes Apply, so backends need not.
type server struct {
	storepb.UnimplementedStoreServer
	store Store
	info  *storepb.InfoResponse

	life    sync.RWMutex // write-held by Open and Close
	open    bool
	applyMu sync.Mutex

	// The open views (Snapshotter), by id. Ids count up from 1 for the
	// life of the process, so an id at or below lastView that views lacks
	// names a view already closed.
	viewsMu  sync.Mutex
	views    map[uint64]*view
	lastView uint64
}

// view is a Snapshot the host opened; mu runs its calls one at a time, as
// the Snapshot contract asks, whatever the host sends.
type view struct {
	mu     sync.Mutex
	snap   Snapshot
	closed bool
}

// close closes the view unless it is closed already.
func (v *view) close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	return v.snap.Close()
}

func newServer(s Store) *server {
	return &server{store: s, info: describe(s)}
}

// describe is what Info answers: the store's name and version, and a
// capability for each optional interface it implements.
func describe(s Store) *storepb.InfoResponse {
	resp := &storepb.InfoResponse{}
	if d, ok := s.(Describer); ok {
		info := d.Describe()
		resp.Name, resp.Version = info.Name, info.Version
	}
	if _, ok := s.(Compacter); ok {
		resp.Capabilities = append(resp.Capabilities, storepb.CapCompact)
	}
	if _, ok := s.(Loader); ok {
		resp.Capabilities = append(resp.Capabilities, storepb.CapBulkLoad)
	}
	if _, ok := s.(Snapshotter); ok {
		resp.Capabilities = append(resp.Capabilities, storepb.CapSnapshot)
	}
	return resp
}

func (s *server) Info(context.Context, *storepb.InfoRequest) (*storepb.InfoResponse, error) {
	return s.info, nil
}

func (s *server) Open(ctx context.Context, req *storepb.OpenRequest) (*storepb.OpenResponse, error) {
	s.life.Lock()
	defer s.life.Unlock()
	if s.open {
		return nil, status.Error(codes.AlreadyExists, "store is already open")
	}
	cfg := req.GetConfig()
	if len(cfg) == 0 {
		cfg = []byte("{}")
	}
	st, err := s.store.Open(ctx, req.GetDir(), cfg)
	if err != nil {
		return nil, toStatus(err)
	}
	s.open = true
	return &storepb.OpenResponse{Cursor: st.Cursor, Meta: st.Meta, Loading: st.Loading}, nil
}

// closeStore closes the store if it is open, and every view open on it
// first; used by Close and on shutdown. No other call is running meanwhile:
// each holds life read-locked.
func (s *server) closeStore(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if !s.open {
		return nil
	}
	s.open = false
	s.viewsMu.Lock()
	views := s.views
	s.views = nil
	s.viewsMu.Unlock()
	var errs []error
	for _, v := range views {
		errs = append(errs, v.close())
	}
	// The store's own error comes first: it is the one that matters.
	return errors.Join(append([]error{s.store.Close(ctx)}, errs...)...)
}

func (s *server) Close(ctx context.Context, _ *storepb.CloseRequest) (*storepb.CloseResponse, error) {
	if err := s.closeStore(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &storepb.CloseResponse{}, nil
}

// reading holds the lifecycle lock for a call that needs an open store.
func (s *server) reading() (release func(), err error) {
	s.life.RLock()
	if !s.open {
		s.life.RUnlock()
		return nil, toStatus(ErrClosed)
	}
	return s.life.RUnlock, nil
}

func (s *server) apply(ctx context.Context, b *Batch) error {
	release, err := s.reading()
	if err != nil {
		return err
	}
	defer release()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return toStatus(s.store.Apply(ctx, b))
}

func (s *server) Apply(ctx context.Context, req *storepb.ApplyRequest) (*storepb.ApplyResponse, error) {
	b := &Batch{Cursor: req.GetCursor(), Meta: req.GetMeta()}
	var err error
	if b.Mutations, err = appendMutations(nil, req); err != nil {
		return nil, err
	}
	if err := s.apply(ctx, b); err != nil {
		return nil, err
	}
	return &storepb.ApplyResponse{}, nil
}

func (s *server) ApplyStream(stream storepb.Store_ApplyStreamServer) error {
	b, end, err := recvBatch(stream.Recv)
	if end != nil {
		err = aborted(end) // the host went away before the batch: nothing applied
	}
	if err != nil {
		return err
	}
	if err := s.apply(stream.Context(), b); err != nil {
		return err
	}
	return stream.SendAndClose(&storepb.ApplyResponse{})
}

// recvBatch receives the chunks of one batch, up to the one marked last.
// A stream that ends before the batch's first chunk returns recv's error as
// end (between batches, for a pipe); one cut after it, an Aborted err.
func recvBatch(recv func() (*storepb.ApplyRequest, error)) (b *Batch, end, err error) {
	b = &Batch{}
	for chunks := 0; ; chunks++ {
		req, err := recv()
		switch {
		case err != nil && chunks == 0:
			return nil, err, nil
		case err != nil:
			return nil, nil, aborted(err)
		}
		if b.Mutations, err = appendMutations(b.Mutations, req); err != nil {
			return nil, nil, err
		}
		if req.GetLast() {
			b.Cursor, b.Meta = req.GetCursor(), req.GetMeta()
			return b, nil, nil
		}
	}
}

// aborted is the status of a batch whose stream ended before its last chunk:
// none of it is applied.
func aborted(err error) error {
	return status.Errorf(codes.Aborted, "batch stream ended before its last chunk: %v", err)
}

// appendMutations appends the mutations of req to dst.
func appendMutations(dst []Mutation, req *storepb.ApplyRequest) ([]Mutation, error) {
	if req.GetPacked() == nil {
		return dst, nil
	}
	dst, err := appendPacked(dst, req.GetPacked())
	if err != nil {
		return dst, status.Error(codes.InvalidArgument, err.Error())
	}
	return dst, nil
}

// appendPacked appends p's mutations to dst. Keys and values are slices of
// p.Data. A malformed run (counts or lengths that disagree, an unknown op)
// is an error and appends nothing: a batch is applied whole or not at all.
func appendPacked(dst []Mutation, p *storepb.Packed) ([]Mutation, error) {
	n, err := p.Check()
	if err != nil {
		return dst, err
	}
	out := dst
	if cap(out)-len(out) < n {
		out = make([]Mutation, len(dst), len(dst)+n)
		copy(out, dst)
	}
	p.Each(func(op storepb.Op, key, value []byte, revision uint64) {
		m := Mutation{Op: OpPut, Key: key, Value: value, Revision: revision}
		if op == storepb.Op_OP_DELETE {
			m.Op = OpDelete
		}
		out = append(out, m)
	})
	return out, nil
}

func (s *server) Get(ctx context.Context, req *storepb.GetRequest) (*storepb.GetResponse, error) {
	release, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer release()
	e, err := s.store.Get(ctx, req.GetKey())
	if errors.Is(err, ErrNotFound) {
		return &storepb.GetResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &storepb.GetResponse{Found: true, Value: e.Value, Revision: e.Revision}, nil
}

// Scan scans the live store, or the open view req.snapshot names. A view's
// scan does not take applyMu: Apply goes on while it reads.
func (s *server) Scan(req *storepb.ScanRequest, stream storepb.Store_ScanServer) error {
	release, err := s.reading()
	if err != nil {
		return err
	}
	defer release()
	r := Range{
		Prefix: req.GetPrefix(), Start: req.GetStart(), End: req.GetEnd(), After: req.GetAfter(),
		Limit: int(req.GetLimit()), KeysOnly: req.GetKeysOnly(),
	}
	scan := s.store.Scan
	if id := req.GetSnapshot(); id != 0 {
		v, err := s.view(id)
		if err != nil {
			return err
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.closed { // by a CloseSnapshot since the lookup
			return closedView(id)
		}
		scan = v.snap.Scan
	}
	return sendScan(stream, r, req.GetPacked(), scan)
}

// sendScan streams to the host the entries scan passes for r, in chunks of
// at most scanChunkBytes or scanChunkEntries: packed (PackedEntries) when
// the host asked for it, else one Entry message each.
func sendScan(stream storepb.Store_ScanServer, r Range, packed bool, scan func(context.Context, Range, func(Entry) error) error) error {
	if packed {
		return sendPacked(stream, r, scan)
	}
	var (
		chunk storepb.ScanResponse
		size  int
	)
	flush := func() error {
		if len(chunk.Entries) == 0 {
			return nil
		}
		err := stream.Send(&chunk)
		chunk.Entries, size = chunk.Entries[:0], 0
		return err
	}
	err := scan(stream.Context(), r, func(e Entry) error {
		// Entries may be reused by the store after fn returns: copy.
		pe := &storepb.Entry{Key: clone(e.Key), Revision: e.Revision}
		if !r.KeysOnly {
			pe.Value = clone(e.Value)
		}
		chunk.Entries = append(chunk.Entries, pe)
		size += len(pe.Key) + len(pe.Value) + 16
		if size >= scanChunkBytes || len(chunk.Entries) >= scanChunkEntries {
			return flush()
		}
		return nil
	})
	if err != nil {
		return toStatus(err)
	}
	return flush()
}

// sendPacked is sendScan's packed form: the entries' bytes are copied once,
// into the message's data, and a message carries up to scanChunkBytes of
// them whatever their number. Each message has buffers of its own (gRPC
// does not promise to be done with a message when Send returns), sized
// after the one before.
func sendPacked(stream storepb.Store_ScanServer, r Range, scan func(context.Context, Range, func(Entry) error) error) error {
	var (
		p    *storepb.PackedEntries
		n    = 64       // room for entries, as the last message needed
		size = 64 << 10 // room for data, as the last message needed
	)
	fresh := func() {
		p = &storepb.PackedEntries{
			KeyLengths:   make([]uint32, 0, n),
			ValueLengths: make([]uint32, 0, n),
			Revisions:    make([]uint64, 0, n),
			Data:         make([]byte, 0, size),
		}
	}
	flush := func() error {
		if p.Len() == 0 {
			return nil
		}
		n, size = cap(p.Revisions), min(cap(p.Data), scanChunkBytes)
		err := stream.Send(&storepb.ScanResponse{Packed: p})
		fresh()
		return err
	}
	fresh()
	err := scan(stream.Context(), r, func(e Entry) error {
		value := e.Value
		if r.KeysOnly {
			value = nil
		}
		if p.Len() > 0 && len(p.Data)+len(e.Key)+len(value) > scanChunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		p.Add(e.Key, value, e.Revision)
		return nil
	})
	if err != nil {
		return toStatus(err)
	}
	return flush()
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

func (s *server) Stats(ctx context.Context, _ *storepb.StatsRequest) (*storepb.StatsResponse, error) {
	release, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer release()
	st, err := s.store.Stats(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storepb.StatsResponse{Keys: st.Keys, Bytes: st.Bytes, DiskBytes: st.DiskBytes}, nil
}

func (s *server) Compact(ctx context.Context, _ *storepb.CompactRequest) (*storepb.CompactResponse, error) {
	release, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer release()
	if c, ok := s.store.(Compacter); ok {
		if err := c.Compact(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	return &storepb.CompactResponse{}, nil
}

func (s *server) BeginLoad(ctx context.Context, _ *storepb.LoadRequest) (*storepb.LoadResponse, error) {
	return s.load(ctx, Loader.BeginLoad)
}

func (s *server) EndLoad(ctx context.Context, _ *storepb.LoadRequest) (*storepb.LoadResponse, error) {
	return s.load(ctx, Loader.EndLoad)
}

// load runs BeginLoad or EndLoad, serialized with Apply.
func (s *server) load(ctx context.Context, call func(Loader, context.Context) error) (*storepb.LoadResponse, error) {
	release, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer release()
	if l, ok := s.store.(Loader); ok {
		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		if err := call(l, ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	return &storepb.LoadResponse{}, nil
}

// OpenSnapshot opens a view with the store's Snapshot and names it by a new
// id.
func (s *server) OpenSnapshot(ctx context.Context, _ *storepb.SnapshotRequest) (*storepb.SnapshotResponse, error) {
	release, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer release()
	sn, ok := s.store.(Snapshotter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the store does not implement sdk.Snapshotter")
	}
	snap, err := sn.Snapshot(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	// A caller that gave up (its deadline passed while the store opened the
	// view, or while this process was not running) will never learn the
	// view's id and so never close it, and an open view pins the store's
	// old versions (pebble) or its WAL (SQLite) until the store closes.
	// What remains is a caller giving up between here and the answer.
	if err := ctx.Err(); err != nil {
		_ = snap.Close()
		return nil, toStatus(err)
	}
	st := snap.State()
	s.viewsMu.Lock()
	defer s.viewsMu.Unlock()
	if s.views == nil {
		s.views = map[uint64]*view{}
	}
	s.lastView++
	s.views[s.lastView] = &view{snap: snap}
	return &storepb.SnapshotResponse{Id: s.lastView, Cursor: st.Cursor, Meta: st.Meta}, nil
}

// CloseSnapshot closes the view req.id names. A view closed already, by
// CloseSnapshot or with the store, is not an error, nor is a closed store
// (it closed its views).
func (s *server) CloseSnapshot(_ context.Context, req *storepb.SnapshotRequest) (*storepb.CloseSnapshotResponse, error) {
	s.life.RLock() // closeStore closes the views it finds; this one is not among them
	defer s.life.RUnlock()
	id := req.GetId()
	s.viewsMu.Lock()
	v, ok := s.views[id]
	delete(s.views, id)
	issued := id != 0 && id <= s.lastView
	s.viewsMu.Unlock()
	switch {
	case ok:
		if err := v.close(); err != nil {
			return nil, toStatus(err)
		}
	case !issued:
		return nil, unknownView(id)
	}
	return &storepb.CloseSnapshotResponse{}, nil
}

// view returns the open view id names.
func (s *server) view(id uint64) (*view, error) {
	s.viewsMu.Lock()
	defer s.viewsMu.Unlock()
	if v, ok := s.views[id]; ok {
		return v, nil
	}
	if id <= s.lastView {
		return nil, closedView(id)
	}
	return nil, unknownView(id)
}

// closedView is the status of a call on a view that was closed: it
// arrives as ErrClosed, as it would from the store itself.
func closedView(id uint64) error {
	return status.Errorf(codes.FailedPrecondition, "snapshot %d is closed", id)
}

// unknownView is the status of a call on a view no OpenSnapshot of this
// process returned.
func unknownView(id uint64) error {
	return status.Errorf(codes.InvalidArgument, "no snapshot %d was opened in this plugin", id)
}

// toStatus carries the sentinel errors across the process boundary.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// ApplyPipe serves a Pipe: one goroutine receives and decodes the next
// batch while this one applies the last.
func (s *server) ApplyPipe(stream storepb.Store_ApplyPipeServer) error {
	ctx := stream.Context()
	batches := make(chan *Batch, 1)
	ended := make(chan error, 1) // why the receiving ended; nil at a clean end
	go func() {
		defer close(batches)
		for {
			b, end, err := recvBatch(stream.Recv)
			if end != nil {
				// The host ends a pipe by cancelling it (Close) or, from
				// other clients, by closing its side: clean between batches.
				if !errors.Is(end, io.EOF) && status.Code(end) != codes.Canceled && ctx.Err() == nil {
					err = aborted(end)
				}
			}
			if b == nil {
				ended <- err
				return
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				ended <- status.FromContextError(ctx.Err()).Err()
				return
			}
		}
	}()
	for b := range batches {
		// A pipe the host gave up on applies nothing more.
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		if err := s.apply(ctx, b); err != nil {
			return err
		}
		if err := stream.Send(&storepb.ApplyResponse{Cursor: b.Cursor}); err != nil {
			return err
		}
	}
	return <-ended
}
