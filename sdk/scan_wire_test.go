package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/pluginhost"
	"github.com/slipstreamkv/slipstream/internal/storepb"
	"github.com/slipstreamkv/slipstream/sdk"
)

// scanStore is a Store whose Scan passes fixed entries through one reused
// buffer, as a store may: whatever crosses the wire must be copied before
// the next entry overwrites it.
type scanStore struct {
	batchRecorder
	entries []sdk.Entry
}

func (s *scanStore) Scan(_ context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	var buf []byte
	for _, e := range s.entries {
		buf = append(append(buf[:0], e.Key...), e.Value...)
		out := sdk.Entry{Key: buf[:len(e.Key)], Revision: e.Revision}
		if !r.KeysOnly {
			out.Value = buf[len(e.Key):]
		}
		if err := fn(out); err != nil {
			return err
		}
	}
	return nil
}

// scanEntries is n entries with values of 0 to 999 bytes, and one of 3 MiB,
// beyond a scan message's size, in the middle.
func scanEntries(n int) []sdk.Entry {
	es := make([]sdk.Entry, n)
	for i := range es {
		es[i] = sdk.Entry{Key: fmt.Appendf(nil, "key/%06d", i), Value: bytes.Repeat([]byte{byte(i)}, i%1000), Revision: uint64(1000 + i)}
	}
	es[n/2].Value = bytes.Repeat([]byte("big"), 1<<20)
	return es
}

// serveServer serves srv on a socket, as serve does a Store's server, and
// opens the store.
func serveServer(t *testing.T, srv storepb.StoreServer) (*pluginhost.Plugin, storepb.StoreClient) {
	t.Helper()
	p, rpc, _ := serveStoreServer(t, srv)
	if _, err := p.Open(context.Background(), t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	return p, rpc
}

func scanAll(t *testing.T, p *pluginhost.Plugin, r sdk.Range) []sdk.Entry {
	t.Helper()
	var got []sdk.Entry
	err := p.Scan(context.Background(), r, func(e sdk.Entry) error {
		got = append(got, sdk.Entry{Key: bytes.Clone(e.Key), Value: bytes.Clone(e.Value), Revision: e.Revision})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func checkEntries(t *testing.T, got, want []sdk.Entry, keysOnly bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d entries; want %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		value := w.Value
		if keysOnly {
			value = nil
		}
		if !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, value) || g.Revision != w.Revision {
			t.Fatalf("entry %d is %q (%d bytes, rev %d); want %q (%d bytes, rev %d)",
				i, g.Key, len(g.Value), g.Revision, w.Key, len(value), w.Revision)
		}
		if keysOnly && g.Value != nil {
			t.Fatalf("entry %d of a keys-only scan has a value of %d bytes", i, len(g.Value))
		}
	}
}

// TestScanCrossesTheWire scans through the host's client, which asks for
// packed entries, and reads the stream as a host that predates them would:
// the same entries either way, every message within its bound unless one
// entry alone exceeds it.
func TestScanCrossesTheWire(t *testing.T) {
	want := scanEntries(5000)
	p, rpc := serveServer(t, sdk.NewServer(&scanStore{entries: want}))
	checkEntries(t, scanAll(t, p, sdk.Range{}), want, false)
	checkEntries(t, scanAll(t, p, sdk.Range{KeysOnly: true}), want, true)

	for _, packed := range []bool{true, false} {
		stream, err := rpc.Scan(context.Background(), &storepb.ScanRequest{Packed: packed})
		if err != nil {
			t.Fatal(err)
		}
		var got []sdk.Entry
		messages := 0
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			messages++
			pk := resp.GetPacked()
			if packed != (pk != nil) || packed != (len(resp.GetEntries()) == 0) {
				t.Fatalf("asked packed=%v; got %d entries and packed %v", packed, len(resp.GetEntries()), pk != nil)
			}
			for _, e := range resp.GetEntries() {
				got = append(got, sdk.Entry{Key: e.GetKey(), Value: e.GetValue(), Revision: e.GetRevision()})
			}
			if pk == nil {
				continue
			}
			n, err := pk.Check()
			if err != nil {
				t.Fatal(err)
			}
			if len(pk.GetData()) > 1<<20 && n > 1 {
				t.Errorf("a message of %d entries carries %d bytes", n, len(pk.GetData()))
			}
			_ = pk.Each(func(k, v []byte, rev uint64) error {
				got = append(got, sdk.Entry{Key: k, Value: v, Revision: rev})
				return nil
			})
		}
		checkEntries(t, got, want, false)
		if packed && messages < 3 {
			t.Errorf("packed: %d messages for entries of more than 3 MiB", messages)
		}
	}
}

// scanServer changes what the store's server answers a Scan.
type scanServer struct {
	storepb.StoreServer
	scan func(*storepb.ScanRequest, storepb.Store_ScanServer) error
}

func (s scanServer) Scan(req *storepb.ScanRequest, stream storepb.Store_ScanServer) error {
	return s.scan(req, stream)
}

// TestScanOfAnOlderPlugin: a plugin that ignores ScanRequest.packed sends
// entries, which the host reads as before.
func TestScanOfAnOlderPlugin(t *testing.T) {
	want := scanEntries(3000)
	inner := sdk.NewServer(&scanStore{entries: want})
	p, _ := serveServer(t, scanServer{StoreServer: inner, scan: func(req *storepb.ScanRequest, stream storepb.Store_ScanServer) error {
		req.Packed = false
		return inner.Scan(req, stream)
	}})
	checkEntries(t, scanAll(t, p, sdk.Range{}), want, false)
	checkEntries(t, scanAll(t, p, sdk.Range{KeysOnly: true}), want, true)
}

// TestMalformedPackedScan: packed entries whose lengths do not add up to
// their data fail the scan instead of passing cut entries.
func TestMalformedPackedScan(t *testing.T) {
	bad := []*storepb.PackedEntries{
		{KeyLengths: []uint32{3}, ValueLengths: []uint32{2}, Revisions: []uint64{1}, Data: []byte("abcd")},
		{KeyLengths: []uint32{3, 1}, ValueLengths: []uint32{2}, Revisions: []uint64{1}, Data: []byte("abcde")},
		{KeyLengths: []uint32{1 << 31, 1 << 31}, ValueLengths: []uint32{0, 1}, Revisions: []uint64{1, 2}, Data: []byte("a")},
	}
	for i, pk := range bad {
		p, _ := serveServer(t, scanServer{StoreServer: sdk.NewServer(&scanStore{}), scan: func(_ *storepb.ScanRequest, stream storepb.Store_ScanServer) error {
			return stream.Send(&storepb.ScanResponse{Packed: pk})
		}})
		calls := 0
		err := p.Scan(context.Background(), sdk.Range{}, func(sdk.Entry) error { calls++; return nil })
		if err == nil || calls != 0 {
			t.Errorf("malformed run %d: Scan = %v after %d entries; want an error before any", i, err, calls)
		}
	}
}

// TestScanStopsAtTheCallersError: fn's error ends a packed scan mid-message
// and is what Scan returns.
func TestScanStopsAtTheCallersError(t *testing.T) {
	p, _ := serveServer(t, sdk.NewServer(&scanStore{entries: scanEntries(3000)}))
	stop := errors.New("enough")
	calls := 0
	err := p.Scan(context.Background(), sdk.Range{}, func(sdk.Entry) error {
		calls++
		if calls == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 10 {
		t.Fatalf("Scan = %v after %d entries; want %v after 10", err, calls, stop)
	}
}
