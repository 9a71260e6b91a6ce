package transforms_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/transforms"
)

// want is the expected outcome of one record.
type want struct {
	keep   bool
	rec    sdk.Mutation // the record to fold, when keep
	reason string       // a substring of the GuestError reason, when failed
}

func kept(r sdk.Mutation) want { return want{keep: true, rec: r} }

var dropped = want{}

func failed(reason string) want { return want{reason: reason} }

// step is one record through a chain and what must come out.
type step struct {
	in   sdk.Mutation
	want want
}

// checkOutcome fails the test unless got is w, for a record with key key
// failing in module mod.
func checkOutcome(t *testing.T, mod string, key []byte, got transforms.Outcome, w want) {
	t.Helper()
	switch {
	case w.reason != "":
		var ge *transforms.GuestError
		if !errors.As(got.Err, &ge) {
			t.Fatalf("key %q: got err %v keep %v, want a GuestError with %q", key, got.Err, got.Keep, w.reason)
		}
		if ge.Module != mod || !bytes.Equal(ge.Key, key) || !strings.Contains(ge.Reason, w.reason) || got.Keep {
			t.Fatalf("key %q: got %v (module %q, key %q, keep %v), want module %q, key %q, reason with %q",
				key, ge, ge.Module, ge.Key, got.Keep, mod, key, w.reason)
		}
	case got.Err != nil:
		t.Fatalf("key %q: unexpected error %v", key, got.Err)
	case got.Keep != w.keep:
		t.Fatalf("key %q: keep = %v, want %v", key, got.Keep, w.keep)
	case w.keep && !sameRecord(got.Record, w.rec):
		t.Fatalf("key %q: folded %s, want %s", key, show(got.Record), show(w.rec))
	}
}

func sameRecord(a, b sdk.Mutation) bool {
	return a.Op == b.Op && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.Revision == b.Revision
}

func show(r sdk.Mutation) string {
	return r.Op.String() + " " + string(r.Key) + "=" + string(r.Value)
}

// runSteps runs every step through c in one Process call, and each step
// alone, and checks the outcomes both ways.
func runSteps(t *testing.T, c *transforms.Chain, mod string, steps []step) {
	t.Helper()
	in := make([]sdk.Mutation, len(steps))
	for i, s := range steps {
		in[i] = s.in
	}
	out := process(t, c, 10*time.Second, in...)
	for i, s := range steps {
		checkOutcome(t, mod, s.in.Key, out[i], s.want)
		alone := process(t, c, 10*time.Second, s.in)
		checkOutcome(t, mod, s.in.Key, alone[0], s.want)
	}
}

func TestKeyFilter(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c := newChain(t, rt, transforms.Module{Name: "kf", Path: wasm("keyfilter"), Config: map[string]any{
		"allow": []any{"route.*", "cfg.>", "user-*.name"},
		"deny":  []any{"*.secret"},
	}})
	runSteps(t, c, "kf", []step{
		{put("route.a", "1"), kept(put("route.a", "1"))},
		{put("route.a.b", "1"), dropped},
		{put("route.secret", "1"), dropped},
		{put("cfg.x", "1"), kept(put("cfg.x", "1"))},
		{put("cfg.x.y", "1"), kept(put("cfg.x.y", "1"))},
		{put("cfg", "1"), dropped},
		{put("user-42.name", "1"), kept(put("user-42.name", "1"))},
		{put("user42.name", "1"), dropped},
		{put("other.b", "1"), dropped},
		{del("route.a"), kept(del("route.a"))},
		{purge("route.a"), kept(purge("route.a"))},
		{del("other.b"), dropped},
		{del("route.secret"), dropped},
	})

	denyOnly := newChain(t, rt, transforms.Module{Name: "deny", Path: wasm("keyfilter"), Config: map[string]any{
		"deny": []any{">"},
	}})
	runSteps(t, denyOnly, "deny", []step{{put("a", "1"), dropped}, {put("a.b.c", "1"), dropped}})
}

func TestRename(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c := newChain(t, rt, transforms.Module{Name: "rn", Path: wasm("rename"), Config: map[string]any{
		"from": "route.", "to": "r.",
	}})
	runSteps(t, c, "rn", []step{
		{put("route.a", "v"), kept(put("r.a", "v"))},
		{put("route.a.b", ""), kept(put("r.a.b", ""))},
		{del("route.a"), kept(del("r.a"))},
		{purge("route.a"), kept(purge("r.a"))},
		{put("other.a", "v"), kept(put("other.a", "v"))},
		{del("other.a"), kept(del("other.a"))},
		{put("routeX", "v"), kept(put("routeX", "v"))},
	})

	strip := newChain(t, rt, transforms.Module{Name: "strip", Path: wasm("rename"), Config: map[string]any{
		"from": "route.",
	}})
	runSteps(t, strip, "strip", []step{
		{put("route.a", "v"), kept(put("a", "v"))},
		{put("route.", "v"), failed("renamed key would be empty")},
		{del("route."), failed("renamed key would be empty")},
	})
}

func TestRedact(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	mod := func(name, nonJSON string) transforms.Module {
		cfg := map[string]any{"fields": []any{"password", "token"}}
		if nonJSON != "" {
			cfg["non_json"] = nonJSON
		}
		return transforms.Module{Name: name, Path: wasm("redact"), Config: cfg}
	}
	const secret = `{"user":"ann", "password":"x","n":[1, 2],"token":{"a":1}}`
	const plain = `{"user":"ann","nested":{"password":"x"}}`
	t.Run("keep", func(t *testing.T) {
		c := newChain(t, rt, mod("redact", ""))
		runSteps(t, c, "redact", []step{
			{put("k", secret), kept(put("k", `{"user":"ann","n":[1, 2]}`))},
			{put("k", plain), kept(put("k", plain))},
			{put("k", `{"password":1}`), kept(put("k", `{}`))},
			{put("k", "not json"), kept(put("k", "not json"))},
			{put("k", `[1]`), kept(put("k", `[1]`))},
			{put("k", `{"a":1} {}`), kept(put("k", `{"a":1} {}`))},
			{del("k"), kept(del("k"))},
			{purge("k"), kept(purge("k"))},
		})
	})
	t.Run("drop", func(t *testing.T) {
		c := newChain(t, rt, mod("redact", "drop"))
		runSteps(t, c, "redact", []step{
			{put("k", secret), kept(put("k", `{"user":"ann","n":[1, 2]}`))},
			{put("k", "not json"), dropped},
			{put("k", `"str"`), dropped},
			{del("k"), kept(del("k"))},
		})
	})
	t.Run("error", func(t *testing.T) {
		c := newChain(t, rt, mod("redact", "error"))
		runSteps(t, c, "redact", []step{
			{put("k", "not json"), failed("value is not a JSON object")},
			{put("k", secret), kept(put("k", `{"user":"ann","n":[1, 2]}`))},
			{del("k"), kept(del("k"))},
		})
	})
}

func TestKeepAllWAT(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c := newChain(t, rt, transforms.Module{Name: "keepall", Path: wasm("keepall")})
	// More records than one batch holds, and a value larger than a batch,
	// which makes the module grow its input buffer and memory.
	var steps []step
	for i := range 5000 {
		r := put(strings.Repeat("k", i%50+1), strings.Repeat("v", i%300))
		if i%7 == 0 {
			r = del(string(r.Key))
		}
		steps = append(steps, step{r, kept(r)})
	}
	big := put("big", strings.Repeat("x", 3<<20))
	steps = append(steps, step{big, kept(big)})
	in := make([]sdk.Mutation, len(steps))
	for i, s := range steps {
		in[i] = s.in
	}
	out := process(t, c, 10*time.Second, in...)
	for i, s := range steps {
		checkOutcome(t, "keepall", s.in.Key, out[i], s.want)
	}
}

func TestChainOrder(t *testing.T) {
	rt := newRuntime(t, transforms.Options{})
	c := newChain(t, rt,
		transforms.Module{Name: "rn", Path: wasm("rename"), Config: map[string]any{"from": "route.", "to": "r."}},
		transforms.Module{Name: "kf", Path: wasm("keyfilter"), Config: map[string]any{"allow": []any{"r.*"}}},
		transforms.Module{Name: "g", Path: wasm("goguest"), Config: map[string]any{"fail": "r.bad"}},
		transforms.Module{Name: "redact", Path: wasm("redact"), Config: map[string]any{"fields": []any{"p"}}},
	)
	in := []sdk.Mutation{
		put("route.a", `{"p":1,"q":2}`),
		put("other.a", "1"),
		del("route.a"),
		put("route.bad", "1"),
		put("r.x", "1"),
	}
	out := process(t, c, 10*time.Second, in...)
	wants := []want{
		kept(put("r.a", `{"q":2}`)),
		dropped,
		kept(del("r.a")),
		failed("refusing r.bad"),
		kept(put("r.x", "1")),
	}
	for i, w := range wants {
		// A failure names the key as it entered the chain.
		checkOutcome(t, "g", in[i].Key, out[i], w)
	}
}
