package store

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/slipstreamkv/slipstream/sdk"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		in      string
		want    Config
		wantErr string
	}{
		{in: "", want: DefaultConfig()},
		{in: "{}", want: DefaultConfig()},
		{in: `{"sync": false, "cache_size": 1048576, "memtable_size": 8388608, "load_buffer": 1048576, "block_size": 4096}`, want: Config{Sync: false, CacheSize: 1 << 20, MemtableSize: 8 << 20, LoadBuffer: 1 << 20, BlockSize: 4 << 10}},
		{in: `{"load_buffer": 1048575}`, wantErr: "load_buffer must be between 1 MiB and 2 GiB"},
		{in: `{"block_size": 1023}`, wantErr: "block_size must be between 1 KiB and 1 MiB"},
		{in: `{"block_size": 1048577}`, wantErr: "block_size must be between 1 KiB and 1 MiB"},
		{in: `{"cache_sise": 1}`, wantErr: `unknown field "cache_sise"`},
		{in: `{"cache_size": 0}`, wantErr: "cache_size must be positive"},
		{in: `{"sync": "yes"}`, wantErr: "cannot unmarshal"},
		{in: `{} {}`, wantErr: "trailing data"},
		{in: `[1]`, wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		got, err := ParseConfig([]byte(tt.in))
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseConfig(%s) error = %v; want one containing %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseConfig(%s): %v", tt.in, err)
		case tt.wantErr == "" && got != tt.want:
			t.Errorf("ParseConfig(%s) = %+v; want %+v", tt.in, got, tt.want)
		}
	}
}

func TestBounds(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name                      string
		prefix, start, end, after []byte
		lower, upper              string // without the data prefix; upper "" means dataEnd
		empty                     bool
	}{
		{name: "all", lower: "", upper: ""},
		{name: "prefix", prefix: b("a/"), lower: "a/", upper: "a0"},
		{name: "prefix ending in 0xff", prefix: b("a\xff"), lower: "a\xff", upper: "b"},
		{name: "prefix of only 0xff", prefix: b("\xff\xff"), lower: "\xff\xff", upper: ""},
		{name: "start above prefix", prefix: b("a"), start: b("a/5"), lower: "a/5", upper: "b"},
		{name: "end below prefix end", prefix: b("a"), end: b("a/5"), lower: "a", upper: "a/5"},
		{name: "after", after: b("k"), lower: "k\x00", upper: ""},
		{name: "after below start", start: b("m"), after: b("k"), lower: "m", upper: ""},
		{name: "start past end", start: b("b"), end: b("a"), empty: true},
		{name: "after past end", after: b("b"), end: b("b\x00"), empty: true},
	}
	for _, tt := range tests {
		lower, upper, ok := bounds(tt.prefix, tt.start, tt.end, tt.after)
		if ok == tt.empty {
			t.Errorf("%s: ok = %v", tt.name, ok)
			continue
		}
		if tt.empty {
			continue
		}
		wantUpper := dataKey(b(tt.upper))
		if tt.upper == "" {
			wantUpper = dataEnd
		}
		if !bytes.Equal(lower, dataKey(b(tt.lower))) || !bytes.Equal(upper, wantUpper) {
			t.Errorf("%s: bounds = [%q, %q); want [%q, %q)", tt.name, lower, upper, dataKey(b(tt.lower)), wantUpper)
		}
	}
}

func openStore(t testing.TB, dir, config string) *Store {
	t.Helper()
	s := New()
	if _, err := s.Open(context.Background(), dir, []byte(config)); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLogsGoToTheLogger checks that pebble's messages reach the plugin's
// logger, and nothing reaches stdout (the go-plugin handshake) or the std
// log package (pebble's default).
func TestLogsGoToTheLogger(t *testing.T) {
	var stdlog bytes.Buffer
	log.SetOutput(&stdlog)
	defer log.SetOutput(os.Stderr)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = stdout }()

	var logged bytes.Buffer
	s := New()
	s.SetLogger(slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx := context.Background()
	dir := t.TempDir()
	for range 2 { // the second open replays the log, which pebble reports
		if _, err := s.Open(ctx, dir, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(ctx, &sdk.Batch{Cursor: 1, Mutations: []sdk.Mutation{{Op: sdk.OpPut, Key: []byte("k")}}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	os.Stdout = stdout
	w.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	if out.Len() > 0 || stdlog.Len() > 0 {
		t.Errorf("pebble wrote to stdout %q and to the std logger %q", out.String(), stdlog.String())
	}
	if !strings.Contains(logged.String(), "store=pebble") || !strings.Contains(logged.String(), "WAL") {
		t.Errorf("pebble's messages did not reach the logger:\n%s", logged.String())
	}
}

func TestRefusesForeignDatabase(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("someone else's key"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = New().Open(context.Background(), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "not a slipstream fold") {
		t.Fatalf("Open of a foreign pebble database = %v; want a refusal", err)
	}
}

func TestRefusesOtherLayoutVersion(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, "{}")
	ctx := context.Background()
	if err := s.db.Set(formatKey, []byte("2"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := New().Open(ctx, dir, nil)
	if err == nil || !strings.Contains(err.Error(), `layout version "2"`) {
		t.Fatalf("Open of a layout version 2 store = %v; want a refusal", err)
	}
}

// TestCompactReclaimsDeletedData checks that Compact does real work: after
// a bulk load is deleted, no table holds data keys any more.
func TestCompactReclaimsDeletedData(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir(), "{}")
	defer s.Close(ctx)
	dataBytes := func() uint64 {
		n, err := s.db.EstimateDiskUsage(dataPrefix, dataEnd)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range 20 {
		b := &sdk.Batch{Cursor: uint64(i + 1)}
		for j := range 1000 {
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "k%06d", i*1000+j), Value: fmt.Appendf(nil, "%0200d", j)})
		}
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	loaded := dataBytes()
	del := &sdk.Batch{Cursor: 21}
	for i := range 20000 {
		del.Mutations = append(del.Mutations, sdk.Mutation{Op: sdk.OpDelete, Key: fmt.Appendf(nil, "k%06d", i)})
	}
	if err := s.Apply(ctx, del); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if left := dataBytes(); loaded == 0 || left != 0 {
		t.Fatalf("tables hold %d bytes of data keys after loading, %d after deleting them all and compacting; want 0", loaded, left)
	}
}

// BenchmarkApply applies batches of 1000 entries with 40-byte keys and
// 200-byte values: new keys (a bootstrap), then overwrites of 100k keys in
// random order, then new keys in random order under a bulk load (BeginLoad
// on the fresh store; EndLoad, untimed, is reported as endload-ms).
func BenchmarkApply(b *testing.B) {
	const batchSize, keySpace = 1000, 100_000
	value := bytes.Repeat([]byte("v"), 200)
	key := func(n int) []byte {
		return fmt.Appendf(nil, "route.t%04d.svc-%05d.endpoint.%08d", n%7919, n%100, n)
	}
	for _, bench := range []struct {
		name, config string
		load         bool
		// key returns the j-th key of batch i; perm is a random permutation
		// of the b.N*batchSize entry numbers.
		key func(perm []int, i, j int) []byte
	}{
		{"insert/sync", `{"sync": true}`, false, func(_ []int, i, j int) []byte { return key(i*batchSize + j) }},
		{"insert/nosync", `{"sync": false}`, false, func(_ []int, i, j int) []byte { return key(i*batchSize + j) }},
		{"overwrite/sync", `{"sync": true}`, false, func(_ []int, i, j int) []byte { return key((i*batchSize + j) * 7919 % keySpace) }},
		{"load/sync", `{"sync": true}`, true, func(perm []int, i, j int) []byte { return key(perm[i*batchSize+j]) }},
		{"load/nosync", `{"sync": false}`, true, func(perm []int, i, j int) []byte { return key(perm[i*batchSize+j]) }},
	} {
		b.Run(bench.name, func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, b.TempDir(), bench.config)
			defer s.Close(ctx)
			var perm []int
			if bench.load {
				perm = rand.New(rand.NewPCG(1, 2)).Perm(b.N * batchSize)
				if err := s.BeginLoad(ctx); err != nil {
					b.Fatal(err)
				}
			}
			// The keys are made before the clock starts: not Apply's work,
			// and compactions would go on while the clock stopped.
			batches := make([]*sdk.Batch, b.N)
			for i := range batches {
				batch := &sdk.Batch{Mutations: make([]sdk.Mutation, batchSize), Cursor: uint64((i + 1) * batchSize)}
				for j := range batch.Mutations {
					batch.Mutations[j] = sdk.Mutation{Op: sdk.OpPut, Key: bench.key(perm, i, j), Value: value, Revision: uint64(i*batchSize + j + 1)}
				}
				batches[i] = batch
			}
			b.ResetTimer()
			for _, batch := range batches {
				if err := s.Apply(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "entries/s")
			if bench.load {
				start := time.Now()
				if err := s.EndLoad(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "endload-ms")
				if st, err := s.Stats(ctx); err != nil || st.Keys != uint64(b.N*batchSize) {
					b.Fatalf("Stats after EndLoad = %+v, %v; want %d keys", st, err, b.N*batchSize)
				}
			}
		})
	}
}

// TestWriteStallsAreRateLimited reports a burst of write stalls, as a fast
// import causes, and checks that one warning, with the reason, says so.
func TestWriteStallsAreRateLimited(t *testing.T) {
	var logged bytes.Buffer
	l := slog.New(slog.NewTextHandler(&logged, nil))
	stall := eventListener(l).WriteStallBegin
	for range 50 {
		stall(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	}
	if n := strings.Count(logged.String(), "pebble write stall"); n != 1 {
		t.Fatalf("50 stalls logged %d warnings, want 1:\n%s", n, logged.String())
	}
	if !strings.Contains(logged.String(), "memtable count limit reached") {
		t.Errorf("the warning does not give the reason:\n%s", logged.String())
	}
}

// BenchmarkFirstApplyAfterOpen times what a resumed fold's first batch
// costs: a store of PEBBLE_BENCH_KEYS keys (default 200k) is closed and
// opened again (its block cache empty, the files in the page cache), then
// one batch of 1000 overwrites of random keys is applied; ms/apply is that
// Apply alone. Its lookups of the keys' stored sizes read blocks the cache
// does not hold yet.
//
//	PEBBLE_BENCH_KEYS=1000000 go test -run '^$' -bench FirstApplyAfterOpen -benchtime 10x ./plugins/pebble/store/
func BenchmarkFirstApplyAfterOpen(b *testing.B) {
	n := 200_000
	if v := os.Getenv("PEBBLE_BENCH_KEYS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	value := bytes.Repeat([]byte("v"), 200)
	key := func(i int) []byte { return fmt.Appendf(nil, "route.t%04d.svc-%05d.endpoint.%08d", i%7919, i%100, i) }
	dir := b.TempDir()
	s := openStore(b, dir, `{}`)
	if err := s.BeginLoad(ctx); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 1000 {
		batch := &sdk.Batch{Cursor: uint64(min(n, i+1000))}
		for j := i; j < min(n, i+1000); j++ {
			batch.Mutations = append(batch.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: key(j), Value: value, Revision: uint64(j + 1)})
		}
		if err := s.Apply(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.EndLoad(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	cursor := uint64(n)
	var took time.Duration
	b.ResetTimer()
	for range b.N {
		s := openStore(b, dir, `{}`)
		batch := &sdk.Batch{Mutations: make([]sdk.Mutation, 1000)}
		for j := range batch.Mutations {
			cursor++
			batch.Mutations[j] = sdk.Mutation{Op: sdk.OpPut, Key: key(rng.IntN(n)), Value: value, Revision: cursor}
		}
		batch.Cursor = cursor
		start := time.Now()
		if err := s.Apply(ctx, batch); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		if err := s.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N), "ms/apply")
}
