//go:build !linux

package store

import "errors"

// mapRegion maps no memory outside Linux: the bulk load's buffer is then
// allocated on the Go heap (pending.alloc).
func mapRegion(int) ([]byte, error) { return nil, errors.ErrUnsupported }

// unmapRegion has nothing to return.
func unmapRegion([]byte) error { return nil }
