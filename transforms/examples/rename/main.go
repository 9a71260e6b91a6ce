//go:build wasip1

// Command rename is a slipstream transform that replaces a key prefix.
// Keys without the prefix are kept unchanged. The new key depends on the key
// alone, so deletes and purges are renamed exactly like puts.
//
// Configuration:
//
//	from = "route."  # prefix to replace; required
//	to   = "r."      # replacement; may be empty
//
// Renaming can make two bucket keys land on one folded key (route.x and an
// existing r.x above); choose prefixes that cannot collide. A key equal to
// from with an empty to would become empty, and fails.
package main

import (
	"bytes"
	"errors"

	"github.com/slipstreamkv/slipstream/sdk/guest"
)

var (
	from, to []byte
	key      []byte // reused for every new key; the SDK copies it
)

func init() {
	guest.Register(guest.Transform{
		Init: func(config []byte) error {
			var cfg struct {
				From string `json:"from"`
				To   string `json:"to"`
			}
			if err := guest.DecodeConfig(config, &cfg); err != nil {
				return err
			}
			if cfg.From == "" {
				return errors.New("config: from must be a non-empty prefix")
			}
			from, to = []byte(cfg.From), []byte(cfg.To)
			return nil
		},
		Record: func(r guest.Record) guest.Result {
			rest, ok := bytes.CutPrefix(r.Key, from)
			if !ok {
				return guest.Result{}
			}
			if len(to)+len(rest) == 0 {
				return guest.Result{Err: errors.New("renamed key would be empty")}
			}
			key = append(append(key[:0], to...), rest...)
			return guest.Result{Key: key}
		},
	})
}

func main() {}
