package main

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// The output convention: text and tables for people by default; with
// --json, JSON for scripts. A verb that prints a report (status, get,
// verify, export, ...) prints one JSON document; a verb that lists records
// (scan, kv ls, watch) prints JSON Lines, one object per record, so that
// a scan of a million keys streams. Values are "value" when they are
// UTF-8 and "value_base64" otherwise.

// jsonFlag defines --json on c.
func jsonFlag(c *cobra.Command, p *bool, usage string) {
	c.Flags().BoolVar(p, "json", false, usage)
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeJSONLine writes v as one line of JSON Lines.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// entryJSON is a key of a fold or a bucket for scripts.
type entryJSON struct {
	Bucket   string `json:"bucket,omitempty"`
	Key      string `json:"key"`
	Revision uint64 `json:"revision"`
	// Value is the value when it is UTF-8; ValueBase64 when it is not.
	Value       *string `json:"value,omitempty"`
	ValueBase64 []byte  `json:"value_base64,omitempty"`
	// Position is where the read stood, GENERATION.CURSOR: watch --from
	// it to follow the changes after the read.
	Position string `json:"position,omitempty"`
}

func newEntryJSON(key string, rev uint64, value []byte) entryJSON {
	e := entryJSON{Key: key, Revision: rev}
	if utf8.Valid(value) {
		v := string(value)
		e.Value = &v
	} else {
		e.ValueBase64 = value
	}
	return e
}

// showValue is a value in a line or table for people. Printable text
// shows as it is; text with control characters (a tab, a newline), empty,
// with surrounding spaces, or that could be mistaken for a quoted or
// summarized value is Go-quoted; a value that is not UTF-8 is summarized.
func showValue(value []byte) string {
	if !utf8.Valid(value) {
		return "(binary " + strconv.Itoa(len(value)) + " bytes)"
	}
	v := string(value)
	if v == "" || !printable(v) || strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "(") || strings.TrimSpace(v) != v {
		return strconv.Quote(v)
	}
	return v
}

// showKey is a key in a line or table for people: quoted if it holds a
// space or a control character (a transform may map keys to anything).
func showKey(key string) string {
	if key == "" || !printable(key) || strings.ContainsAny(key, ` "`) {
		return strconv.Quote(key)
	}
	return key
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}
