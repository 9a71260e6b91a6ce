//go:build !linux

package store

// mapRegion is n bytes of zeroed memory for a bulk load's buffer: outside
// Linux, from the Go heap.
func mapRegion(n int) ([]byte, error) { return make([]byte, n), nil }

// unmapRegion leaves b to the garbage collector.
func unmapRegion([]byte) error { return nil }
