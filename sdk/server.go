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

// scanChunkBytes and scanChunkEntries bound one streamed Scan message.
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

// closeStore closes the store if it is open; used by Close and on shutdown.
func (s *server) closeStore(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if !s.open {
		return nil
	}
	s.open = false
	return s.store.Close(ctx)
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
	err = s.store.Scan(stream.Context(), r, func(e Entry) error {
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
