//go:build wasip1

// Command redact is a slipstream transform that removes top-level fields
// from values that are JSON objects. Deletes and purges pass unchanged, as
// do values without any of the fields (byte for byte). When a field is
// removed, the other members keep their order and their raw values.
//
// Configuration:
//
//	fields   = ["password", "token"]  # top-level fields to remove
//	non_json = "keep"                 # values that are not JSON objects:
//	                                  # "keep" (default), "drop" or "error"
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/slipstreamkv/slipstream/sdk/guest"
)

var (
	fields  map[string]bool
	nonJSON string
	out     []byte // reused for every new value; the SDK copies it
)

var errNotObject = errors.New("value is not a JSON object")

// redact returns v without the configured fields, and whether any was
// there.
func redact(v []byte) ([]byte, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false, errNotObject
	}
	out = append(out[:0], '{')
	changed := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false, errNotObject
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false, errNotObject
		}
		if fields[name] {
			changed = true
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		quoted, err := json.Marshal(name)
		if err != nil {
			return nil, false, err
		}
		out = append(append(append(out, quoted...), ':'), raw...)
	}
	if _, err := dec.Token(); err != nil {
		return nil, false, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, errNotObject
	}
	return append(out, '}'), changed, nil
}

func init() {
	guest.Register(guest.Transform{
		Init: func(config []byte) error {
			var cfg struct {
				Fields  []string `json:"fields"`
				NonJSON string   `json:"non_json"`
			}
			if err := guest.DecodeConfig(config, &cfg); err != nil {
				return err
			}
			switch cfg.NonJSON {
			case "":
				cfg.NonJSON = "keep"
			case "keep", "drop", "error":
			default:
				return errors.New(`config: non_json must be "keep", "drop" or "error", not "` + cfg.NonJSON + `"`)
			}
			fields = make(map[string]bool, len(cfg.Fields))
			for _, f := range cfg.Fields {
				fields[f] = true
			}
			nonJSON = cfg.NonJSON
			return nil
		},
		Record: func(r guest.Record) guest.Result {
			if r.Op != guest.OpPut {
				return guest.Result{}
			}
			v, changed, err := redact(r.Value)
			switch {
			case err == nil && changed:
				return guest.Result{Value: v}
			case err == nil || nonJSON == "keep":
				return guest.Result{}
			case nonJSON == "drop":
				return guest.Result{Drop: true}
			}
			return guest.Result{Err: err}
		},
	})
}

func main() {}
