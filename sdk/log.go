package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// NewPluginLogger returns the logger a plugin writes with: JSON lines on w
// in the shape go-plugin forwards to the host (@level, @message), so each
// record reaches the host's log with its level and attributes.
func NewPluginLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{} // the host stamps its own time
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.Attr{Key: "@message", Value: a.Value}
			}
			return a
		},
	}))
}

// slogWriter receives the host-side go-plugin logger's JSON lines (which
// include everything the plugin logged) and re-emits them through slog.
type slogWriter struct {
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
func (w *slogWriter) LastError() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastError
}

func (w *slogWriter) Write(p []byte) (int, error) {
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

func (w *slogWriter) emit(line []byte) {
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
