package transforms_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/transforms"
)

func TestNewChainRefuses(t *testing.T) {
	notWasm := filepath.Join(t.TempDir(), "notwasm.wasm")
	if err := os.WriteFile(notWasm, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts transforms.Options
		mods []transforms.Module
		want string
	}{
		{"no marker", transforms.Options{}, []transforms.Module{{Name: "noabi", Path: wasm("noabi")}},
			`transform[noabi]: ` + wasm("noabi") + `: not a slipstream ABI v1 module: export "slipstream_abi_v1" is missing`},
		{"wrong signature", transforms.Options{}, []transforms.Module{{Name: "badsig", Path: wasm("badsig")}},
			`transform[badsig]: ` + wasm("badsig") + `: ABI v1 export "slipstream_record" has type (i32, i32) -> (i32), want (i32, i32, i32, i32, i32, i64) -> (i32)`},
		{"foreign import", transforms.Options{}, []transforms.Module{{Name: "badimport", Path: wasm("badimport")}},
			`transform[badimport]: ` + wasm("badimport") + `: module imports env.now; only wasi_snapshot_preview1 functions are provided`},
		{"unknown WASI import", transforms.Options{}, []transforms.Module{{Name: "badwasi", Path: wasm("badwasi")}},
			`transform[badwasi]: ` + wasm("badwasi") + `: module imports wasi_snapshot_preview1.fd_teleport, which the host does not provide`},
		{"not wasm", transforms.Options{}, []transforms.Module{{Name: "text", Path: notWasm}},
			`transform[text]: ` + notWasm + `: invalid magic number`},
		{"missing file", transforms.Options{}, []transforms.Module{{Name: "gone", Path: wasm("gone")}},
			`transform[gone]: open ` + wasm("gone") + `: no such file or directory`},
		{"no name", transforms.Options{}, []transforms.Module{{Path: wasm("keepall")}},
			`transform[` + wasm("keepall") + `]: module has no name`},
		{"duplicate name", transforms.Options{}, []transforms.Module{{Name: "k", Path: wasm("keepall")}, {Name: "k", Path: wasm("keepall")}},
			`transform[k]: name used twice in the chain`},
		{"unencodable config", transforms.Options{}, []transforms.Module{{Name: "k", Path: wasm("keepall"), Config: map[string]any{"f": func() {}}}},
			`transform[k]: config: json: unsupported type: func()`},
		{"memory cap below the module's minimum", transforms.Options{MemoryLimitPages: 4}, []transforms.Module{{Name: "g", Path: wasm("goguest")}},
			`transform[g]: ` + wasm("goguest") + `: section memory: min `},
		{"unknown config key", transforms.Options{}, []transforms.Module{{Name: "kf", Path: wasm("keyfilter"), Config: map[string]any{"alow": []any{"a"}}}},
			`transform[kf]: ` + wasm("keyfilter") + `: init: config: json: unknown field "alow"`},
		{"bad pattern", transforms.Options{}, []transforms.Module{{Name: "kf", Path: wasm("keyfilter"), Config: map[string]any{"allow": []any{"a..b"}}}},
			`transform[kf]: ` + wasm("keyfilter") + `: init: pattern "a..b" has an empty token`},
		{"misplaced tail", transforms.Options{}, []transforms.Module{{Name: "kf", Path: wasm("keyfilter"), Config: map[string]any{"deny": []any{"a.>.b"}}}},
			`transform[kf]: ` + wasm("keyfilter") + `: init: pattern "a.>.b": ">" must be the whole last token`},
		{"rename without from", transforms.Options{}, []transforms.Module{{Name: "rn", Path: wasm("rename"), Config: map[string]any{"to": "x."}}},
			`transform[rn]: ` + wasm("rename") + `: init: config: from must be a non-empty prefix`},
		{"redact policy", transforms.Options{}, []transforms.Module{{Name: "rd", Path: wasm("redact"), Config: map[string]any{"non_json": "maybe"}}},
			`transform[rd]: ` + wasm("redact") + `: init: config: non_json must be "keep", "drop" or "error", not "maybe"`},
		{"second module", transforms.Options{}, []transforms.Module{{Name: "ok", Path: wasm("keepall")}, {Name: "noabi", Path: wasm("noabi")}},
			`transform[noabi]: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newRuntime(t, tt.opts)
			c, err := rt.NewChain(context.Background(), tt.mods)
			if err == nil {
				c.Close(context.Background())
				t.Fatal("NewChain succeeded")
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("NewChain error:\n%v\nwant it to start with\n%s", err, tt.want)
			}
		})
	}
}

// chainDigest builds a chain of mods on a fresh runtime and returns its
// digest.
func chainDigest(t *testing.T, mods ...transforms.Module) string {
	t.Helper()
	return newChain(t, newRuntime(t, transforms.Options{}), mods...).Digest()
}

func TestDigest(t *testing.T) {
	keepall := transforms.Module{Name: "keepall", Path: wasm("keepall")}
	rename := transforms.Module{Name: "rn", Path: wasm("rename"), Config: map[string]any{"from": "a.", "to": "b."}}
	base := chainDigest(t, keepall, rename)

	// The documented formula (ABI.md, "Chain digest"), computed here
	// independently: it involves nothing a process or host could vary.
	h := sha256.New()
	for _, m := range []struct{ path, config string }{
		{keepall.Path, `{}`},
		{rename.Path, `{"from":"a.","to":"b."}`},
	} {
		code, err := os.ReadFile(m.path)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(code))))
		h.Write(code)
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(m.config))))
		h.Write([]byte(m.config))
	}
	if want := hex.EncodeToString(h.Sum(nil)); base != want {
		t.Fatalf("digest %s, want %s", base, want)
	}

	// A copy of keepall with an extra custom section: other bytes, same
	// behavior.
	code, err := os.ReadFile(wasm("keepall"))
	if err != nil {
		t.Fatal(err)
	}
	altered := filepath.Join(t.TempDir(), "keepall.wasm")
	section := append([]byte{0, 8, 5}, "extra\x01\x02"...) // id 0, size 8, name "extra", 2 bytes
	if err := os.WriteFile(altered, append(code, section...), 0o644); err != nil {
		t.Fatal(err)
	}
	renamed := rename
	renamed.Name = "other-name"
	otherConfig := rename
	otherConfig.Config = map[string]any{"from": "a.", "to": "c."}

	tests := []struct {
		name string
		mods []transforms.Module
		same bool
	}{
		{"identical", []transforms.Module{keepall, rename}, true},
		{"module names are not part of it", []transforms.Module{keepall, renamed}, true},
		{"config changed", []transforms.Module{keepall, otherConfig}, false},
		{"module bytes changed", []transforms.Module{{Name: "keepall", Path: altered}, rename}, false},
		{"order changed", []transforms.Module{rename, keepall}, false},
		{"module removed", []transforms.Module{rename}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chainDigest(t, tt.mods...); (got == base) != tt.same {
				t.Fatalf("digest %s, base %s, want same=%v", got, base, tt.same)
			}
		})
	}
}

// cacheFile identifies one version of a file in the compilation cache.
type cacheFile struct {
	size  int64
	mtime time.Time
	inode uint64
}

// snapshot lists the files under dir.
func snapshot(t *testing.T, dir string) map[string]cacheFile {
	t.Helper()
	files := map[string]cacheFile{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[path] = cacheFile{info.Size(), info.ModTime(), info.Sys().(*syscall.Stat_t).Ino}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestCompilationCache checks that a runtime fills its cache directory and
// that a later runtime uses it instead of compiling again, which would
// rewrite the entry.
func TestCompilationCache(t *testing.T) {
	dir := t.TempDir()
	// A WAT module goes through the cache like a Go one, without the
	// second of compiling a Go guest cold.
	mods := []transforms.Module{{Name: "keepall", Path: wasm("keepall")}}

	first := snapshot(t, dir)
	rt := newRuntime(t, transforms.Options{CacheDir: dir})
	newChain(t, rt, mods...)
	filled := snapshot(t, dir)
	if len(filled) <= len(first) {
		t.Fatalf("cache has %d files after compiling, %d before", len(filled), len(first))
	}

	again := newRuntime(t, transforms.Options{CacheDir: dir})
	c := newChain(t, again, mods...)
	if reused := snapshot(t, dir); !maps.EqualFunc(reused, filled, cacheFile.same) {
		t.Fatalf("second runtime changed the cache:\nbefore %v\nafter  %v", filled, reused)
	}
	out := process(t, c, 10*time.Second, put("k", "v"))
	checkOutcome(t, "keepall", []byte("k"), out[0], kept(put("k", "v")))
}

func (f cacheFile) same(g cacheFile) bool {
	return f.size == g.size && f.mtime.Equal(g.mtime) && f.inode == g.inode
}

func TestNewRuntimeOptions(t *testing.T) {
	tests := []struct {
		name string
		opts transforms.Options
		want string
	}{
		{"memory above 4 GiB", transforms.Options{MemoryLimitPages: 65537}, "MemoryLimitPages 65537 is above the wasm maximum of 65536"},
		{"negative timeout", transforms.Options{CallTimeout: -time.Second}, "negative CallTimeout -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := transforms.NewRuntime(context.Background(), tt.opts)
			if err == nil {
				rt.Close(context.Background())
				t.Fatal("NewRuntime succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewRuntime = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestChainPerWorker runs one chain per goroutine from a shared runtime,
// the way a fold's workers use it.
func TestChainPerWorker(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	mod := transforms.Module{Name: "rn", Path: wasm("rename"), Config: map[string]any{"from": "a.", "to": "b."}}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			c, err := rt.NewChain(context.Background(), []transforms.Module{mod})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for i := range 50 {
				key := fmt.Sprintf("a.%d.%d", w, i)
				out, err := c.Process(context.Background(), []sdk.Mutation{put(key, "v")})
				if err != nil {
					errs <- err
					return
				}
				if want := "b" + key[1:]; !out[0].Keep || string(out[0].Record.Key) != want {
					errs <- fmt.Errorf("worker %d: %q became %q (keep %v), want %q", w, key, out[0].Record.Key, out[0].Keep, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
