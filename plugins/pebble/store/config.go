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
	// Sync commits every batch with an fsync before Apply returns. Without
	// it pebble writes its log in the background, so a crash can lose the
	// last batches; the cursor still agrees with the data, and the host
	// replays what was lost.
	Sync bool `json:"sync"`
	// CacheSize is the block cache in bytes.
	CacheSize int64 `json:"cache_size"`
	// MemtableSize is the size of one memtable in bytes; 0 keeps pebble's
	// default (4 MiB). Pebble requires it to be below 4 GiB.
	MemtableSize uint64 `json:"memtable_size"`
	// LoadBuffer is how many bytes of a bulk load's batches the store
	// gathers in memory, sorted, before it writes them to a table and has
	// pebble ingest it.
	LoadBuffer int `json:"load_buffer"`
	// BlockSize is the size, before compression, at which a table's data
	// block is cut. Larger blocks make every table pebble writes and every
	// compaction read cheaper (fewer reads, cache entries and index
	// entries), a point lookup that misses the cache dearer.
	BlockSize int `json:"block_size"`
}

// DefaultConfig is what an empty store_config means.
func DefaultConfig() Config {
	return Config{Sync: true, CacheSize: 64 << 20, LoadBuffer: 64 << 20, BlockSize: 16 << 10}
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
	if cfg.LoadBuffer < 1<<20 || cfg.LoadBuffer > 1<<31 {
		return Config{}, fmt.Errorf("pebble store_config: load_buffer must be between 1 MiB and 2 GiB (%d and %d bytes), got %d", 1<<20, 1<<31, cfg.LoadBuffer)
	}
	if cfg.BlockSize < 1<<10 || cfg.BlockSize > 1<<20 {
		return Config{}, fmt.Errorf("pebble store_config: block_size must be between 1 KiB and 1 MiB (%d and %d bytes), got %d", 1<<10, 1<<20, cfg.BlockSize)
	}
	return cfg, nil
}
