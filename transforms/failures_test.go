package transforms_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/transforms"
)

// TestGuestFailures runs a record that makes a guest fail between two good
// ones: the bad record gets a GuestError naming the module, the key and the
// cause, the others are answered, and the chain goes on working.
func TestGuestFailures(t *testing.T) {
	const timeout = 500 * time.Millisecond
	rt := newRuntime(t, transforms.Options{CallTimeout: timeout, MemoryLimitPages: 64})
	tests := []struct {
		name   string
		module transforms.Module
		bad    string
		reason string
		// calls is how many deadlines the failure can cost: one for a
		// record, two when a batch times out and its replay times out again.
		calls int
	}{
		{"wat loop", transforms.Module{Path: wasm("loop")}, "!x", "call exceeded the 500ms deadline", 1},
		{"wat trap", transforms.Module{Path: wasm("trap")}, "!x", "trap: wasm error: unreachable", 1},
		{"wat grow", transforms.Module{Path: wasm("grow")}, "!x", "memory limit of 64 pages reached", 1},
		{"wat bad output", transforms.Module{Path: wasm("malformed")}, "!x", "malformed answer: output [4294901760, 4294901760+64) is outside guest memory", 1},
		{"wat bad verdict", transforms.Module{Path: wasm("malformed")}, "?x", "malformed answer: verdict 7 is not defined by ABI v1", 1},
		{"go panic", transforms.Module{Path: wasm("goguest"), Config: map[string]any{"panic": "bad"}}, "bad", `"panic: boom on bad`, 1},
		{"go hog", transforms.Module{Path: wasm("goguest"), Config: map[string]any{"hog": "bad"}}, "bad", "out of memory", 1},
		{"go loop", transforms.Module{Path: wasm("goguest"), Config: map[string]any{"loop": "bad"}}, "bad", "call exceeded the 500ms deadline", 2},
		{"go error", transforms.Module{Path: wasm("goguest"), Config: map[string]any{"fail": "bad"}}, "bad", "refusing bad", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.module.Name = strings.ReplaceAll(tt.name, " ", "-")
			c := newChain(t, rt, tt.module)
			limit := time.Duration(tt.calls)*timeout + 2*time.Second
			start := time.Now()
			out := process(t, c, limit, put("a", "1"), put(tt.bad, "2"), put("c", "3"))
			elapsed := time.Since(start)
			checkOutcome(t, tt.module.Name, []byte("a"), out[0], kept(put("a", "1")))
			checkOutcome(t, tt.module.Name, []byte(tt.bad), out[1], failed(tt.reason))
			checkOutcome(t, tt.module.Name, []byte("c"), out[2], kept(put("c", "3")))
			if elapsed > limit {
				t.Errorf("Process took %v, want at most %v", elapsed, limit)
			}
			again := process(t, c, limit, put("d", "4"), put(tt.bad, "5"))
			checkOutcome(t, tt.module.Name, []byte("d"), again[0], kept(put("d", "4")))
			checkOutcome(t, tt.module.Name, []byte(tt.bad), again[1], failed(tt.reason))
		})
	}
}

// TestGuestErrorString checks the error format callers log.
func TestGuestErrorString(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c := newChain(t, rt, transforms.Module{Name: "trap", Path: wasm("trap")})
	out := process(t, c, 10*time.Second, put("!k\"", "v"))
	const want = `transform[trap] key "!k\"": trap: wasm error: unreachable`
	if out[0].Err == nil || out[0].Err.Error() != want {
		t.Fatalf("error = %v, want %s", out[0].Err, want)
	}
}

// TestInstanceReplaced shows with a guest that counts the records it has
// seen that an instance is replaced after a trap, and kept after an error
// the guest reports itself.
func TestInstanceReplaced(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	tests := []struct {
		name   string
		config map[string]any
		after  string // the stamp of the record after the bad one
	}{
		{"panic", map[string]any{"panic": "bad", "stamp": true}, "1"},
		{"reported error", map[string]any{"fail": "bad", "stamp": true}, "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChain(t, rt, transforms.Module{Name: "g", Path: wasm("goguest"), Config: tt.config})
			out := process(t, c, 10*time.Second, put("a", ""), put("bad", ""), put("c", ""))
			checkOutcome(t, "g", []byte("a"), out[0], kept(put("a", "1")))
			if out[1].Err == nil {
				t.Fatal("bad record did not fail")
			}
			checkOutcome(t, "g", []byte("c"), out[2], kept(put("c", tt.after)))
		})
	}
}

// TestSandbox checks what a guest observes of the host: the fixed clock,
// a monotonic clock that lets sleeps end at once, zero randomness, no
// files and no environment.
func TestSandbox(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c := newChain(t, rt, transforms.Module{Name: "probe", Path: wasm("goguest"), Config: map[string]any{"probe": true}})
	const want = "now=2000-01-01T00:00:00Z slept=true rand=0000000000000000 fs=denied env=0"
	for range 2 {
		out := process(t, c, 10*time.Second, put("k", ""))
		checkOutcome(t, "probe", []byte("k"), out[0], kept(put("k", want)))
	}
}

// TestProcessContext checks that the caller's context ending is the
// caller's error, not a guest's.
func TestProcessContext(t *testing.T) {
	rt := newRuntime(t, transforms.Options{CallTimeout: time.Minute})
	c := newChain(t, rt, transforms.Module{Name: "loop", Path: wasm("loop")})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Process(ctx, []sdk.Mutation{put("!x", "")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Process = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("Process took %v after its context ended", elapsed)
	}
	// The interrupted instance is replaced.
	out := process(t, c, 10*time.Second, put("a", "1"))
	checkOutcome(t, "loop", []byte("a"), out[0], kept(put("a", "1")))
}

func TestProcessRefusesUnknownOp(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c := newChain(t, rt, transforms.Module{Name: "keepall", Path: wasm("keepall")})
	_, err := c.Process(context.Background(), []sdk.Mutation{{Op: 9, Key: []byte("k")}})
	if err == nil || !strings.Contains(err.Error(), `record 0 (key "k") has unknown op(9)`) {
		t.Fatalf("Process = %v, want an unknown op error", err)
	}
}

func TestProcessAfterClose(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c, err := rt.NewChain(context.Background(), []transforms.Module{{Name: "keepall", Path: wasm("keepall")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Process(context.Background(), []sdk.Mutation{put("k", "")}); err == nil {
		t.Fatal("Process on a closed chain succeeded")
	}
}
