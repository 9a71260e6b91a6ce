package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/slipstreamkv/slipstream/plugins/sqlite/store"
	"github.com/slipstreamkv/slipstream/sdk"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s := store.New()
	if _, err := s.Open(context.Background(), t.TempDir(), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func viewEntries(t *testing.T, v sdk.Snapshot, r sdk.Range) []sdk.Entry {
	t.Helper()
	var out []sdk.Entry
	err := v.Scan(context.Background(), r, func(e sdk.Entry) error {
		out = append(out, sdk.Entry{Key: bytes.Clone(e.Key), Value: bytes.Clone(e.Value), Revision: e.Revision})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestViewOfALoad: a view opened during a bulk load scans what the load
// will leave, the newest put of each key unless a later delete covers it,
// and keeps doing so while the load goes on.
func TestViewOfALoad(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if err := s.BeginLoad(ctx); err != nil {
		t.Fatal(err)
	}
	put := func(k, v string, rev uint64) sdk.Mutation {
		return sdk.Mutation{Op: sdk.OpPut, Key: []byte(k), Value: []byte(v), Revision: rev}
	}
	b1 := &sdk.Batch{Cursor: 3, Meta: map[string][]byte{"m": []byte("1")}, Mutations: []sdk.Mutation{
		put("a", "a1", 1), put("b", "b1", 2), put("c", "", 3)}}
	b2 := &sdk.Batch{Cursor: 6, Meta: map[string][]byte{"m": []byte("2")}, Mutations: []sdk.Mutation{
		put("a", "a2", 4), {Op: sdk.OpDelete, Key: []byte("b")}, put("d", "d1", 6)}}
	for _, b := range []*sdk.Batch{b1, b2} {
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	v, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := s.Apply(ctx, &sdk.Batch{Cursor: 9, Mutations: []sdk.Mutation{put("b", "b3", 7), put("a", "a3", 8)}}); err != nil {
		t.Fatal(err)
	}
	if st := v.State(); st.Cursor != 6 || string(st.Meta["m"]) != "2" {
		t.Fatalf("the view's state is cursor %d, meta %q; want 6, m=2", st.Cursor, st.Meta)
	}
	got := viewEntries(t, v, sdk.Range{})
	want := "a=a2@4 c=@3 d=d1@6 "
	if s := show(got); s != want {
		t.Fatalf("the view of the load holds %s; want %s", s, want)
	}
	if s := show(viewEntries(t, v, sdk.Range{Start: []byte("b"), KeysOnly: true})); s != "c=@3 d=@6 " {
		t.Fatalf("keys only from b: %s", s)
	}
}

func show(es []sdk.Entry) string {
	var b bytes.Buffer
	for _, e := range es {
		fmt.Fprintf(&b, "%s=%s@%d ", e.Key, e.Value, e.Revision)
	}
	return b.String()
}

// TestViewScanStops: a view's Scan ends with its caller's error, and with
// the context's once it ends, although rows are copied ahead of fn in
// batches; the view scans again afterwards.
func TestViewScanStops(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	b := &sdk.Batch{Cursor: 5000}
	for i := range 5000 {
		b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "k/%05d", i), Value: bytes.Repeat([]byte("v"), 100), Revision: uint64(i + 1)})
	}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	v, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	stop := errors.New("stop")
	n := 0
	err = v.Scan(ctx, sdk.Range{}, func(sdk.Entry) error {
		if n++; n == 1500 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 1500 {
		t.Fatalf("Scan = %v after %d entries; want %v after 1500", err, n, stop)
	}

	cctx, cancel := context.WithCancel(ctx)
	n = 0
	err = v.Scan(cctx, sdk.Range{}, func(sdk.Entry) error {
		if n++; n == 1 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n >= 5000 {
		t.Fatalf("Scan with its context cancelled = %v after %d entries; want context.Canceled before the end", err, n)
	}

	if got := viewEntries(t, v, sdk.Range{}); len(got) != 5000 || string(got[4999].Key) != "k/04999" {
		t.Fatalf("the view scans %d entries after the stopped scans; want 5000", len(got))
	}
}
