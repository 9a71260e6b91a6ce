package sdk_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/slipstreamkv/slipstream/sdk"
)

// memStore is a Store in memory only: enough to show the contract's shape.
// A real store keeps its fold in dir and makes each Apply durable (see
// sdk/example for a complete one, and plugins/pebble and plugins/sqlite).
type memStore struct {
	mu     sync.RWMutex
	open   bool
	cursor uint64
	meta   map[string][]byte
	data   map[string]sdk.Entry
}

func (s *memStore) Open(_ context.Context, _ string, config []byte) (sdk.State, error) {
	if !bytes.Equal(bytes.TrimSpace(config), []byte("{}")) {
		return sdk.State{}, fmt.Errorf("memstore takes no store_config, got %s", config)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		s.data, s.meta = map[string]sdk.Entry{}, map[string][]byte{}
	}
	s.open = true
	return sdk.State{Cursor: s.cursor, Meta: s.meta}, nil
}

// Apply commits the whole batch under one lock: readers see all of it or
// none. It copies what it keeps, since the batch's bytes are not its own.
func (s *memStore) Apply(_ context.Context, b *sdk.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return sdk.ErrClosed
	}
	for _, m := range b.Mutations {
		switch m.Op {
		case sdk.OpPut:
			s.data[string(m.Key)] = sdk.Entry{Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value), Revision: m.Revision}
		case sdk.OpDelete:
			delete(s.data, string(m.Key))
		}
	}
	for k, v := range b.Meta {
		s.meta[k] = bytes.Clone(v)
	}
	s.cursor = b.Cursor
	return nil
}

func (s *memStore) Get(_ context.Context, key []byte) (sdk.Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.open {
		return sdk.Entry{}, sdk.ErrClosed
	}
	e, ok := s.data[string(key)]
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	return e, nil
}

func (s *memStore) Scan(_ context.Context, r sdk.Range, fn func(sdk.Entry) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.open {
		return sdk.ErrClosed
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range s.data {
			if !yield(k) {
				return
			}
		}
	})
	n := 0
	for _, k := range keys {
		key := []byte(k)
		switch {
		case !bytes.HasPrefix(key, r.Prefix),
			r.Start != nil && bytes.Compare(key, r.Start) < 0,
			r.End != nil && bytes.Compare(key, r.End) >= 0,
			r.After != nil && bytes.Compare(key, r.After) <= 0:
			continue
		}
		if r.Limit > 0 && n == r.Limit {
			return nil
		}
		n++
		if err := fn(s.data[k]); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Stats(context.Context) (sdk.Stats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.open {
		return sdk.Stats{}, sdk.ErrClosed
	}
	st := sdk.Stats{Keys: uint64(len(s.data))}
	for _, e := range s.data {
		st.Bytes += uint64(len(e.Key) + len(e.Value))
	}
	return st, nil
}

func (s *memStore) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open = false
	return nil
}

// Describe names the store in the host's log and in conformance reports.
func (s *memStore) Describe() sdk.Info { return sdk.Info{Name: "memstore", Version: "1"} }

// A store plugin's main function hands its store to Serve. The binary,
// named slipstream-store-NAME, is then started by the host for a fold whose
// config says store = "NAME"; run by hand it says it is a plugin and exits.
func ExampleServe() {
	sdk.Serve(&memStore{})
}

// The calls the host makes of a store, in order: Open reports where the
// fold stands, Apply commits a batch with its cursor, and reads see whole
// batches.
func ExampleStore() {
	ctx := context.Background()
	var s sdk.Store = &memStore{}
	st, _ := s.Open(ctx, "/var/lib/slipstream/routes/gen-000001", []byte("{}"))
	fmt.Println("opened at cursor", st.Cursor)

	_ = s.Apply(ctx, &sdk.Batch{
		Mutations: []sdk.Mutation{
			{Op: sdk.OpPut, Key: []byte("route.a"), Value: []byte("10.0.0.1"), Revision: 41},
			{Op: sdk.OpPut, Key: []byte("route.b"), Value: []byte("10.0.0.2"), Revision: 42},
			{Op: sdk.OpDelete, Key: []byte("route.old"), Revision: 43},
		},
		Cursor: 43,
	})
	e, _ := s.Get(ctx, []byte("route.b"))
	fmt.Printf("%s = %s (revision %d)\n", e.Key, e.Value, e.Revision)
	_ = s.Scan(ctx, sdk.Range{Prefix: []byte("route.")}, func(e sdk.Entry) error {
		fmt.Println("scan:", string(e.Key))
		return nil
	})
	_ = s.Close(ctx)
	_, err := s.Get(ctx, []byte("route.a"))
	fmt.Println("after Close:", err)
	// Output:
	// opened at cursor 0
	// route.b = 10.0.0.2 (revision 42)
	// scan: route.a
	// scan: route.b
	// after Close: store is not open
}
