package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a config file, at the line that defines Key (or, for
// a missing key, at the header of the table that should hold it).
type Error struct {
	File string // the path the config was loaded from, as given
	Line int    // 1-based line number
	Key  string // full key path such as fold[1].batch.window; empty only for syntax errors outside any table
	Msg  string
}

// Error returns "FILE:LINE: KEY: MSG", or "FILE:LINE: MSG" when Key is empty.
func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}

// Errors is every problem found in one config file, in line order. Parse and
// Load return it (never empty) so that all problems can be fixed in one pass.
type Errors []*Error

// Error returns one error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// collector gathers errors for one file, at most one per key: the first
// problem found with a key (a decode error, say) hides later consequences of
// it (such as the same key then reported missing).
type collector struct {
	file string
	loc  *locator
	errs Errors
	seen map[string]bool
}

func newCollector(file string, loc *locator) *collector {
	return &collector{file: file, loc: loc, seen: make(map[string]bool)}
}

func (c *collector) add(p path, format string, args ...any) {
	k := p.String()
	if c.seen[k] {
		return
	}
	c.seen[k] = true
	c.errs = append(c.errs, &Error{File: c.file, Line: c.loc.line(p), Key: k, Msg: fmt.Sprintf(format, args...)})
}

// err returns the errors sorted by line, or nil if there are none.
func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), strings.Compare(a.Key, b.Key))
	})
	return c.errs
}
