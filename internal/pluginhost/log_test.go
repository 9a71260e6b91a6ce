package pluginhost

import (
	"log/slog"
	"testing"
)

// TestLastError feeds the host-side log bridge the lines go-plugin writes
// for a plugin that logs an error, panics and exits, and checks which one
// LastError keeps as the reason the plugin died.
func TestLastError(t *testing.T) {
	steps := []struct {
		line string
		want string
	}{
		{`{"@level":"info","@message":"opened","@module":"plugin.slipstream-store-x"}`, ""},
		{`{"@level":"error","@message":"commit failed","@module":"plugin.slipstream-store-x","err":"disk full"}`, "commit failed: disk full"},
		{`{"@level":"error","@message":"plugin process exited","@module":"plugin","error":"exit status 2"}`, "commit failed: disk full"},
		{`{"@level":"debug","@message":"panic: pebble: fatal commit error","@module":"plugin.slipstream-store-x"}`, "panic: pebble: fatal commit error"},
		{`{"@level":"error","@message":"goroutine 7 [running]:","@module":"plugin.slipstream-store-x"}`, "panic: pebble: fatal commit error"},
		{`{"@level":"error","@message":"\tserver.go:1107 +0x11d","@module":"plugin.slipstream-store-x"}`, "panic: pebble: fatal commit error"},
	}
	w := &logWriter{logger: slog.New(slog.DiscardHandler)}
	for i, s := range steps {
		if _, err := w.Write([]byte(s.line + "\n")); err != nil {
			t.Fatal(err)
		}
		if got := w.LastError(); got != s.want {
			t.Fatalf("after line %d: LastError = %q, want %q", i, got, s.want)
		}
	}
}
