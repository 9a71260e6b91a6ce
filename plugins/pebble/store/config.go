package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Config is the pebble store's part of a fold's store_config.
type Config struct {
	// Sync is how far a batch's commit goes before Apply returns (the
	// package doc, "Config"): SyncFull, SyncNormal (the default) or
	// SyncOff. The JSON value true means "full", false "off".
	Sync SyncLevel `json:"sync"`
	// CacheSize is the block cache in bytes.
	CacheSize int64 `json:"cache_size"`
	// MemtableSize is the size of one memtable in bytes; 0 keeps pebble's
	// default (4 MiB). Pebble requires it to be below 4 GiB.
	MemtableSize uint64 `json:"memtable_size"`
}

// DefaultConfig is what an empty store_config means.
func DefaultConfig() Config {
	return Config{Sync: SyncNormal, CacheSize: 64 << 20}
}

// ParseConfig decodes a store_config JSON object over DefaultConfig. Unknown
// keys, trailing data and a non-positive cache_size are errors; pebble itself
// checks memtable_size when the store opens.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("pebble store_config: %w", err)
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("pebble store_config: trailing data after the JSON object")
	}
	if cfg.CacheSize <= 0 {
		return Config{}, fmt.Errorf("pebble store_config: cache_size must be positive, got %d", cfg.CacheSize)
	}
	return cfg, nil
}

// SyncLevel is how far a commit goes before Apply returns.
type SyncLevel string

const (
	// SyncFull: to the disk (fsync). A commit outlives a crash of the
	// machine.
	SyncFull SyncLevel = "full"
	// SyncNormal: to the operating system. A commit outlives a crash of
	// the plugin; a crash of the machine may lose the last commits, whole.
	SyncNormal SyncLevel = "normal"
	// SyncOff: into pebble's buffers, which it writes out in the
	// background. A crash of the plugin may lose the last commits, whole.
	SyncOff SyncLevel = "off"
)

// UnmarshalJSON takes "full", "normal" or "off", or a bool: true is
// "full" and false "off", the two levels there were before "normal".
func (l *SyncLevel) UnmarshalJSON(data []byte) error {
	var b bool
	if err := json.Unmarshal(data, &b); err == nil {
		*l = SyncOff
		if b {
			*l = SyncFull
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("sync: want \"full\", \"normal\", \"off\" or a bool, got %s", data)
	}
	switch v := SyncLevel(s); v {
	case SyncFull, SyncNormal, SyncOff:
		*l = v
		return nil
	}
	return fmt.Errorf("sync: want \"full\", \"normal\" or \"off\", got %q", s)
}
