package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/internal/conformance/refstore"
	"github.com/slipstreamkv/slipstream/sdk"
)

// TestReferencePasses runs the whole suite against the reference store: the
// cases do not fail a correct store.
func TestReferencePasses(t *testing.T) {
	Run(t, refTarget("reference", refstore.Knobs{}, nil), rapidProperty)
}

// wrapped is a reference store with some methods replaced: the broken stores
// that need no access to its insides.
type wrapped struct {
	*refstore.Store
	apply func(r *refstore.Store, ctx context.Context, b *sdk.Batch) error
	get   func(r *refstore.Store, ctx context.Context, key []byte) (sdk.Entry, error)
	scan  func(r *refstore.Store, ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error
	stats func(r *refstore.Store, ctx context.Context) (sdk.Stats, error)
	open  func(r *refstore.Store, ctx context.Context, dir string, config []byte) (sdk.State, error)
	close func(r *refstore.Store, ctx context.Context) error
	// view wraps the reference store's views (sdk.Snapshotter).
	view func(r *refstore.Store, v sdk.Snapshot) sdk.Snapshot
}

func (w *wrapped) Snapshot(ctx context.Context) (sdk.Snapshot, error) {
	v, err := w.Store.Snapshot(ctx)
	if err != nil || w.view == nil {
		return v, err
	}
	return w.view(w.Store, v), nil
}

// liveView is a view whose Scan reads the live store: it sees the batches
// applied after it opened, and holds the store's lock while it reads.
type liveView struct {
	sdk.Snapshot
	r *refstore.Store
}

func (l liveView) Scan(ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
	return l.r.Scan(ctx, rg, fn)
}

// onceView is a view whose second Close fails.
type onceView struct {
	sdk.Snapshot
	closed bool
}

func (o *onceView) Close() error {
	if o.closed {
		return errors.New("the view is already closed")
	}
	o.closed = true
	return o.Snapshot.Close()
}

// unclosableView is a view whose Close does nothing: it reads on after it.
type unclosableView struct{ sdk.Snapshot }

func (unclosableView) Close() error { return nil }

func (w *wrapped) Open(ctx context.Context, dir string, config []byte) (sdk.State, error) {
	if w.open != nil {
		return w.open(w.Store, ctx, dir, config)
	}
	return w.Store.Open(ctx, dir, config)
}

func (w *wrapped) Apply(ctx context.Context, b *sdk.Batch) error {
	if w.apply != nil {
		return w.apply(w.Store, ctx, b)
	}
	return w.Store.Apply(ctx, b)
}

func (w *wrapped) Get(ctx context.Context, key []byte) (sdk.Entry, error) {
	if w.get != nil {
		return w.get(w.Store, ctx, key)
	}
	return w.Store.Get(ctx, key)
}

func (w *wrapped) Scan(ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
	if w.scan != nil {
		return w.scan(w.Store, ctx, rg, fn)
	}
	return w.Store.Scan(ctx, rg, fn)
}

func (w *wrapped) Stats(ctx context.Context) (sdk.Stats, error) {
	if w.stats != nil {
		return w.stats(w.Store, ctx)
	}
	return w.Store.Stats(ctx)
}

func (w *wrapped) Close(ctx context.Context) error {
	if w.close != nil {
		return w.close(w.Store, ctx)
	}
	return w.Store.Close(ctx)
}

// mapBatch applies f to a copy of every mutation, dropping those it
// rejects.
func mapBatch(b *sdk.Batch, f func(m sdk.Mutation) (sdk.Mutation, bool)) *sdk.Batch {
	out := &sdk.Batch{Cursor: b.Cursor, Meta: b.Meta}
	for _, m := range b.Mutations {
		if m, ok := f(m); ok {
			out.Mutations = append(out.Mutations, m)
		}
	}
	return out
}

func applyMapped(f func(m sdk.Mutation) (sdk.Mutation, bool)) func(*refstore.Store, context.Context, *sdk.Batch) error {
	return func(r *refstore.Store, ctx context.Context, b *sdk.Batch) error { return r.Apply(ctx, mapBatch(b, f)) }
}

// scanSorted returns the entries of rg, ordered by less instead of bytes,
// with Limit applied after sorting.
func scanSorted(less func(a, b []byte) int) func(*refstore.Store, context.Context, sdk.Range, func(sdk.Entry) error) error {
	return func(r *refstore.Store, ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
		limit := rg.Limit
		rg.Limit = 0
		all, err := scanAll(ctx, r, rg)
		if err != nil {
			return err
		}
		slices.SortFunc(all, func(a, b sdk.Entry) int { return less(a.Key, b.Key) })
		for i, e := range all {
			if limit > 0 && i == limit {
				break
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}
}

func signedCompare(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if x, y := int8(a[i]), int8(b[i]); x != y {
			return int(x) - int(y)
		}
	}
	return len(a) - len(b)
}

// brokenStores are stores each wrong in one way, with the case built to
// catch that way. TestBrokenStoresFail runs each against its case.
var brokenStores = []struct {
	name   string
	knobs  refstore.Knobs
	wrap   func(*refstore.Store) sdk.Store
	caught []string // cases that must fail
}{
	{name: "cursor committed without its data", knobs: refstore.Knobs{LazyData: true},
		caught: []string{"crash-after-apply", "model"}},
	{name: "data committed without its cursor", knobs: refstore.Knobs{LazyCursor: true},
		caught: []string{"crash-after-apply", "model"}},
	{name: "data kept only in memory", knobs: refstore.Knobs{VolatileData: true},
		caught: []string{"persistence", "model"}},
	{name: "batch visible half-way", knobs: refstore.Knobs{Torn: true},
		caught: []string{"concurrent-reads"}},
	{name: "batch half applied on error", knobs: refstore.Knobs{Chunked: true},
		caught: []string{"apply-cancel"}},
	{name: "metadata overwritten instead of upserted", knobs: refstore.Knobs{OverwriteMeta: true},
		caught: []string{"meta-upsert", "model"}},
	{name: "corrupt directory opened as empty", knobs: refstore.Knobs{AcceptCorrupt: true},
		caught: []string{"corrupt-dir"}},
	{name: "lost delete", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, apply: applyMapped(func(m sdk.Mutation) (sdk.Mutation, bool) { return m, m.Op != sdk.OpDelete })}
	}, caught: []string{"deletes", "model"}},
	{name: "empty value stored as a delete", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, apply: applyMapped(func(m sdk.Mutation) (sdk.Mutation, bool) {
			if m.Op == sdk.OpPut && len(m.Value) == 0 {
				m.Op = sdk.OpDelete
			}
			return m, true
		})}
	}, caught: []string{"empty-values", "model"}},
	{name: "revisions truncated to 32 bits", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, apply: applyMapped(func(m sdk.Mutation) (sdk.Mutation, bool) {
			m.Revision = uint64(uint32(m.Revision))
			return m, true
		})}
	}, caught: []string{"revisions"}},
	{name: "keys cut at the first NUL byte", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, apply: applyMapped(func(m sdk.Mutation) (sdk.Mutation, bool) {
			if i := bytes.IndexByte(m.Key, 0); i >= 0 {
				m.Key = m.Key[:i]
			}
			return m, true
		})}
	}, caught: []string{"binary-safe"}},
	{name: "values cut at 1 MiB", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, apply: applyMapped(func(m sdk.Mutation) (sdk.Mutation, bool) {
			if len(m.Value) > 1<<20 {
				m.Value = m.Value[:1<<20]
			}
			return m, true
		})}
	}, caught: []string{"large-entries"}},
	{name: "a batch's deletes applied after its puts", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, apply: func(r *refstore.Store, ctx context.Context, b *sdk.Batch) error {
			sorted := *b
			sorted.Mutations = slices.Clone(b.Mutations)
			slices.SortStableFunc(sorted.Mutations, func(x, y sdk.Mutation) int { return int(x.Op) - int(y.Op) })
			return r.Apply(ctx, &sorted)
		}}
	}, caught: []string{"batch-order"}},
	{name: "batch without mutations not committed", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, apply: func(r *refstore.Store, ctx context.Context, b *sdk.Batch) error {
			if len(b.Mutations) == 0 {
				return nil
			}
			return r.Apply(ctx, b)
		}}
	}, caught: []string{"cursor-only-batch"}},
	{name: "re-applied batch refused", wrap: func(r *refstore.Store) sdk.Store {
		var cursor uint64
		return &wrapped{Store: r,
			open: func(r *refstore.Store, ctx context.Context, dir string, config []byte) (sdk.State, error) {
				st, err := r.Open(ctx, dir, config)
				cursor = st.Cursor
				return st, err
			},
			apply: func(r *refstore.Store, ctx context.Context, b *sdk.Batch) error {
				if len(b.Mutations) > 0 && b.Cursor <= cursor {
					return fmt.Errorf("batch cursor %d is not past the store's cursor %d", b.Cursor, cursor)
				}
				cursor = b.Cursor
				return r.Apply(ctx, b)
			}}
	}, caught: []string{"idempotent-reapply"}},
	{name: "batches over 16 MiB refused", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, apply: func(r *refstore.Store, ctx context.Context, b *sdk.Batch) error {
			size := 0
			for _, m := range b.Mutations {
				size += len(m.Key) + len(m.Value)
			}
			if size > 16<<20 {
				return fmt.Errorf("batch of %d bytes is over the 16 MiB limit", size)
			}
			return r.Apply(ctx, b)
		}}
	}, caught: []string{"large-batch"}},
	{name: "directory not created", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, open: func(r *refstore.Store, ctx context.Context, dir string, config []byte) (sdk.State, error) {
			if _, err := os.Stat(dir); err != nil {
				return sdk.State{}, err
			}
			return r.Open(ctx, dir, config)
		}}
	}, caught: []string{"open-empty"}},
	{name: "scan ordered by signed bytes", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, scan: scanSorted(signedCompare)}
	}, caught: []string{"scan-ranges", "binary-safe"}},
	{name: "scan ignores After", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, scan: func(r *refstore.Store, ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
			rg.After = nil
			return r.Scan(ctx, rg, fn)
		}}
	}, caught: []string{"scan-pagination", "scan-ranges"}},
	{name: "scan ignores Limit", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, scan: func(r *refstore.Store, ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
			rg.Limit = 0
			return r.Scan(ctx, rg, fn)
		}}
	}, caught: []string{"scan-pagination", "scan-ranges"}},
	{name: "scan ignores Prefix", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, scan: func(r *refstore.Store, ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
			rg.Prefix = nil
			return r.Scan(ctx, rg, fn)
		}}
	}, caught: []string{"scan-ranges"}},
	{name: "scan does not stop on the callback's error", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, scan: func(r *refstore.Store, ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
			var first error
			err := r.Scan(ctx, rg, func(e sdk.Entry) error {
				if err := fn(e); err != nil && first == nil {
					first = err
				}
				return nil
			})
			if first != nil {
				return first
			}
			return err
		}}
	}, caught: []string{"scan-ranges"}},
	{name: "keys-only scan without revisions", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, scan: func(r *refstore.Store, ctx context.Context, rg sdk.Range, fn func(sdk.Entry) error) error {
			return r.Scan(ctx, rg, func(e sdk.Entry) error {
				if rg.KeysOnly {
					e.Revision = 0
				}
				return fn(e)
			})
		}}
	}, caught: []string{"keys-only"}},
	{name: "absent key returned as an empty entry", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, get: func(r *refstore.Store, ctx context.Context, key []byte) (sdk.Entry, error) {
			e, err := r.Get(ctx, key)
			if errors.Is(err, sdk.ErrNotFound) {
				return sdk.Entry{Key: key}, nil
			}
			return e, err
		}}
	}, caught: []string{"get-absent"}},
	{name: "stats count puts, not keys", wrap: func(r *refstore.Store) sdk.Store {
		var keys uint64
		return &wrapped{Store: r,
			apply: func(r *refstore.Store, ctx context.Context, b *sdk.Batch) error {
				for _, m := range b.Mutations {
					if m.Op == sdk.OpPut {
						keys++
					} else if keys > 0 {
						keys--
					}
				}
				return r.Apply(ctx, b)
			},
			stats: func(r *refstore.Store, ctx context.Context) (sdk.Stats, error) {
				st, err := r.Stats(ctx)
				st.Keys = keys
				return st, err
			}}
	}, caught: []string{"stats"}},
	{name: "unknown config keys ignored", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, open: func(r *refstore.Store, ctx context.Context, dir string, _ []byte) (sdk.State, error) {
			return r.Open(ctx, dir, []byte("{}"))
		}}
	}, caught: []string{"config"}},
	{name: "calls after Close still served", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, close: func(*refstore.Store, context.Context) error { return nil }}
	}, caught: []string{"use-after-close"}},
	// Broken bulk loads (sdk.Loader): the reference store appends a load's
	// batches to a log that EndLoad folds into its data.
	{name: "load keeps the first put of a key", knobs: refstore.Knobs{LoadFirstWins: true},
		caught: []string{"bulk-load", "model"}},
	{name: "load loses its deletes", knobs: refstore.Knobs{LoadDropsDeletes: true},
		caught: []string{"bulk-load", "model"}},
	{name: "load not recorded in the file", knobs: refstore.Knobs{VolatileLoading: true},
		caught: []string{"bulk-load", "bulk-load-refused", "bulk-load-crash", "model"}},
	{name: "load counts rows as keys", knobs: refstore.Knobs{LoadCountsRows: true},
		caught: []string{"bulk-load", "model"}},
	{name: "load begun on a store that holds data", knobs: refstore.Knobs{LoadAnywhere: true},
		caught: []string{"bulk-load-refused", "bulk-load", "model"}},
	{name: "load buffered until EndLoad", knobs: refstore.Knobs{LoadBuffered: true},
		caught: []string{"bulk-load-crash", "model"}},
	{name: "load crash loses an earlier batch, keeps a later one", knobs: refstore.Knobs{LoadLosesFirst: true},
		caught: []string{"bulk-load-crash"}},
	// Broken views (sdk.Snapshotter).
	{name: "snapshot reads the live store", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, view: func(r *refstore.Store, v sdk.Snapshot) sdk.Snapshot { return liveView{v, r} }}
	}, caught: []string{"snapshot", "snapshot-many"}},
	{name: "snapshot scan holds the store's lock, so Apply waits", knobs: refstore.Knobs{SnapshotBlocksApply: true},
		caught: []string{"snapshot"}},
	{name: "snapshot's second Close fails", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, view: func(_ *refstore.Store, v sdk.Snapshot) sdk.Snapshot { return &onceView{Snapshot: v} }}
	}, caught: []string{"snapshot-close"}},
	{name: "snapshot scanned after its Close", wrap: func(r *refstore.Store) sdk.Store {
		return &wrapped{Store: r, view: func(_ *refstore.Store, v sdk.Snapshot) sdk.Snapshot { return unclosableView{v} }}
	}, caught: []string{"snapshot-close"}},
	{name: "snapshots outlive the store's Close", knobs: refstore.Knobs{SnapshotOutlivesClose: true},
		caught: []string{"snapshot-store-close"}},
}

// TestBrokenStoresFail proves the suite can fail: each broken store fails
// the cases built to catch its fault.
func TestBrokenStoresFail(t *testing.T) {
	byName := map[string]testCase{}
	for _, tc := range cases() {
		byName[tc.Name] = tc
	}
	root := t.TempDir()
	for _, b := range brokenStores {
		target := refTarget(b.name, b.knobs, b.wrap)
		info, err := probe(&target)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range b.caught {
			t.Run(b.name+"/"+name, func(t *testing.T) {
				tc, ok := byName[name]
				if !ok {
					t.Fatalf("no case %q", name)
				}
				res := runCase(&target, info, tc, root)
				if res.skipped != "" {
					t.Fatalf("case skipped: %s", res.skipped)
				}
				if len(res.failures) == 0 {
					t.Fatalf("case %s passed against a store with this fault", name)
				}
				t.Logf("fails as it should: %s", res.failures[0])
			})
		}
	}
}

// TestSplitCommitPluginFails proves kill-mid-apply and kill-mid-pipe catch
// a plugin process that commits a batch's data and its cursor separately:
// each case kills the process at points spread over its batches, so one
// lands between the two.
func TestSplitCommitPluginFails(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a plugin")
	}
	target := Plugin(buildTestdata(t, "splitcommit"))
	info, err := probe(&target)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases() {
		if tc.Name != "kill-mid-apply" && tc.Name != "kill-mid-pipe" {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			res := runCase(&target, info, tc, t.TempDir())
			if res.skipped != "" {
				t.Fatalf("case skipped: %s", res.skipped)
			}
			if len(res.failures) == 0 {
				t.Fatalf("%s passed against a plugin that commits data and cursor separately; logs: %v", tc.Name, res.logs)
			}
			t.Logf("fails as it should: %s", res.failures[0])
		})
	}
}

// buildTestdata builds the plugin in testdata/name and returns its path.
func buildTestdata(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestReferencePlugin runs the bulk-load and snapshot cases, and
// use-after-close, against the reference store as a plugin process:
// BeginLoad, EndLoad, State.Loading and the views cross the sdk's gRPC
// boundary, and bulk-load-crash kills the process in the middle of a load's
// Apply and of its EndLoad. (The model case's loads run in-process, in
// TestReferencePasses.)
func TestReferencePlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a plugin")
	}
	target := Plugin(buildTestdata(t, "refplugin"))
	info, err := probe(&target)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{capBulkLoad, capSnapshot} {
		if !info.Has(c) {
			t.Fatalf("the reference plugin does not declare %q: %+v", c, info)
		}
	}
	root := t.TempDir()
	for _, tc := range cases() {
		if tc.Capability != capBulkLoad && tc.Capability != capSnapshot && tc.Name != "use-after-close" {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			res := runCase(&target, info, tc, root)
			if res.skipped != "" {
				t.Fatalf("case skipped: %s", res.skipped)
			}
			for _, l := range res.logs {
				t.Log(l)
			}
			for _, f := range res.failures {
				t.Error(f)
			}
			t.Logf("took %v", res.elapsed.Round(time.Millisecond))
		})
	}
}
