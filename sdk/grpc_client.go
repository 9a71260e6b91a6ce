package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/slipstreamkv/slipstream/sdk/internal/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// applyChunkBytes is the payload size above which Apply streams the batch in
// chunks instead of sending one message.
const applyChunkBytes = 4 << 20

// maxMessageBytes bounds one gRPC message in either direction: room for the
// largest NATS payload (64 MiB) plus its key and framing.
const maxMessageBytes = 80 << 20

// client implements Store over the gRPC connection to a plugin.
type client struct {
	rpc storepb.StoreClient
	// packed: the plugin reads ApplyRequest.packed (it reported wire 1).
	packed bool
}

func (c *client) info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &storepb.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus(err)
	}
	c.packed = resp.GetWire() >= 1
	return Info{Name: resp.GetName(), Version: resp.GetVersion(), Capabilities: resp.GetCapabilities()}, nil
}

func (c *client) Open(ctx context.Context, dir string, config []byte) (State, error) {
	resp, err := c.rpc.Open(ctx, &storepb.OpenRequest{Dir: dir, Config: config})
	if err != nil {
		return State{}, fromStatus(err)
	}
	meta := resp.GetMeta()
	if meta == nil {
		meta = map[string][]byte{}
	}
	return State{Cursor: resp.GetCursor(), Meta: meta, Loading: resp.GetLoading()}, nil
}

func (c *client) Apply(ctx context.Context, b *Batch) error {
	size := 0
	for i := range b.Mutations {
		size += len(b.Mutations[i].Key) + len(b.Mutations[i].Value) + 16
	}
	if size <= applyChunkBytes {
		req := c.request(b.Mutations)
		req.Cursor, req.Meta, req.Last = b.Cursor, b.Meta, true
		_, err := c.rpc.Apply(ctx, req)
		return fromStatus(err)
	}
	return c.applyStream(ctx, b)
}

// applyStream sends a batch larger than one message. The plugin commits it
// only after the last chunk arrives, so a broken stream applies nothing.
func (c *client) applyStream(ctx context.Context, b *Batch) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.ApplyStream(ctx)
	if err != nil {
		return fromStatus(err)
	}
	if err := c.chunks(b, stream.Send); err != nil {
		if errors.Is(err, io.EOF) {
			// The server closed the stream early; its status says why.
			_, err = stream.CloseAndRecv()
		}
		return fromStatus(err)
	}
	_, err = stream.CloseAndRecv()
	return fromStatus(err)
}

// chunks sends b as requests of about applyChunkBytes of payload each; only
// the last carries the cursor and metadata, and is marked last.
func (c *client) chunks(b *Batch, send func(*storepb.ApplyRequest) error) error {
	start, size := 0, 0
	for i := range b.Mutations {
		size += len(b.Mutations[i].Key) + len(b.Mutations[i].Value) + 16
		if size >= applyChunkBytes && i < len(b.Mutations)-1 {
			if err := send(c.request(b.Mutations[start : i+1])); err != nil {
				return err
			}
			start, size = i+1, 0
		}
	}
	req := c.request(b.Mutations[start:])
	req.Cursor, req.Meta, req.Last = b.Cursor, b.Meta, true
	return send(req)
}

// request is an ApplyRequest carrying ms, packed when the plugin reads that.
func (c *client) request(ms []Mutation) *storepb.ApplyRequest {
	if c.packed {
		return &storepb.ApplyRequest{Packed: pack(ms)}
	}
	return &storepb.ApplyRequest{Mutations: toProto(ms)}
}

func toProto(ms []Mutation) []*storepb.Mutation {
	out := make([]*storepb.Mutation, len(ms))
	backing := make([]storepb.Mutation, len(ms))
	for i := range ms {
		op := storepb.Op_OP_PUT
		if ms[i].Op == OpDelete {
			op = storepb.Op_OP_DELETE
		}
		p := &backing[i]
		p.Op, p.Key, p.Value, p.Revision = op, ms[i].Key, ms[i].Value, ms[i].Revision
		out[i] = p
	}
	return out
}

func (c *client) Get(ctx context.Context, key []byte) (Entry, error) {
	resp, err := c.rpc.Get(ctx, &storepb.GetRequest{Key: key})
	if err != nil {
		return Entry{}, fromStatus(err)
	}
	if !resp.GetFound() {
		return Entry{}, ErrNotFound
	}
	return Entry{Key: key, Value: resp.GetValue(), Revision: resp.GetRevision()}, nil
}

func (c *client) Scan(ctx context.Context, r Range, fn func(Entry) error) error {
	if r.Limit < 0 {
		return fmt.Errorf("scan: negative limit %d", r.Limit)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Scan(ctx, &storepb.ScanRequest{
		Prefix: r.Prefix, Start: r.Start, End: r.End, After: r.After,
		Limit: uint64(r.Limit), KeysOnly: r.KeysOnly,
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
		for _, e := range resp.GetEntries() {
			if err := fn(Entry{Key: e.GetKey(), Value: e.GetValue(), Revision: e.GetRevision()}); err != nil {
				return err
			}
		}
	}
}

func (c *client) Stats(ctx context.Context) (Stats, error) {
	resp, err := c.rpc.Stats(ctx, &storepb.StatsRequest{})
	if err != nil {
		return Stats{}, fromStatus(err)
	}
	return Stats{Keys: resp.GetKeys(), Bytes: resp.GetBytes(), DiskBytes: resp.GetDiskBytes()}, nil
}

func (c *client) Compact(ctx context.Context) error {
	_, err := c.rpc.Compact(ctx, &storepb.CompactRequest{})
	return fromStatus(err)
}

func (c *client) BeginLoad(ctx context.Context) error {
	_, err := c.rpc.BeginLoad(ctx, &storepb.LoadRequest{})
	return fromStatus(err)
}

func (c *client) EndLoad(ctx context.Context) error {
	_, err := c.rpc.EndLoad(ctx, &storepb.LoadRequest{})
	return fromStatus(err)
}

func (c *client) Close(ctx context.Context) error {
	_, err := c.rpc.Close(ctx, &storepb.CloseRequest{})
	return fromStatus(err)
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
		return ErrNotFound
	case codes.FailedPrecondition:
		return fmt.Errorf("%w: %s", ErrClosed, st.Message())
	case codes.Canceled:
		return fmt.Errorf("%w: %s", context.Canceled, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%w: %s", context.DeadlineExceeded, st.Message())
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrPluginUnavailable, st.Message())
	}
	return errors.New(st.Message())
}
