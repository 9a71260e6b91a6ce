package main

import (
	"strings"
	"testing"

	"github.com/slipstreamkv/slipstream/client"
)

// TestPrintStatusUnknownKeys: a fold whose store did not count its keys
// shows "?" and the reason, never the 0 of an empty fold; a counted fold,
// empty or not, shows its count.
func TestPrintStatusUnknownKeys(t *testing.T) {
	var out strings.Builder
	printStatus(&out, []client.Status{
		{Name: "hung", State: "synced", Ready: true, StoreError: "the store plugin did not answer a read within 10s"},
		{Name: "empty", State: "synced", Ready: true},
		{Name: "full", State: "synced", Ready: true, Keys: 42},
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want a header, three folds and one reason:\n%s", len(lines), out.String())
	}
	for i, want := range []struct{ name, keys string }{{"hung", "?"}, {"", ""}, {"empty", "0"}, {"full", "42"}} {
		line := lines[1+i]
		if want.name == "" {
			if !strings.Contains(line, "keys not counted: the store plugin did not answer a read within 10s") {
				t.Errorf("line %q: want why the keys were not counted", line)
			}
			continue
		}
		f := strings.Fields(line)
		if f[0] != want.name || f[len(f)-1] != want.keys {
			t.Errorf("line %q: want fold %s with KEYS %s", line, want.name, want.keys)
		}
	}
}
