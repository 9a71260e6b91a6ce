package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// logWriter receives the host-side go-plugin logger's JSON lines (which
// include everything the plugin logged) and re-emits them through slog.
type logWriter struct {
	logger *slog.Logger
	mu     sync.Mutex
	buf    []byte
	// lastError is the last error the plugin logged (or the first line of
	// a panic it printed), so that a plugin that dies can be told by why.
	lastError string
	panicked  bool
}

// LastError returns the last error-level message the plugin logged, with
// its err attribute, or the panic line it printed; "" when none.
func (w *logWriter) LastError() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastError
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *logWriter) emit(line []byte) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		w.logger.Info(string(line))
		return
	}
	msg, _ := rec["@message"].(string)
	lvl := parseLevel(rec["@level"])
	// Only the plugin's own records (module "plugin.NAME") say why it
	// failed; go-plugin's (module "plugin") say only that it exited.
	fromPlugin := strings.HasPrefix(fmt.Sprint(rec["@module"]), "plugin.")
	switch {
	case !fromPlugin || w.panicked:
		// After a panic line come its goroutine stacks: keep the panic.
	case strings.HasPrefix(msg, "panic: "):
		// go-plugin passes a plugin's raw stderr lines on as messages.
		w.lastError, w.panicked = msg, true
	case lvl >= slog.LevelError:
		w.lastError = msg
		if e, ok := rec["err"].(string); ok && e != "" {
			w.lastError += ": " + e
		}
	}
	attrs := make([]slog.Attr, 0, len(rec))
	for k, v := range rec {
		switch k {
		case "@message", "@level", "@timestamp", "timestamp":
			continue
		case "@module":
			k = "module"
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	w.logger.LogAttrs(context.Background(), lvl, msg, attrs...)
}

func parseLevel(v any) slog.Level {
	s, _ := v.(string)
	switch strings.ToLower(s) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
