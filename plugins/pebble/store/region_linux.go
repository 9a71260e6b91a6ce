package store

import "golang.org/x/sys/unix"

// mapRegion is n bytes of zeroed memory outside the Go heap, for a bulk
// load's buffer (pending). The kernel is asked for transparent huge pages,
// which it may or may not give: the buffer is filled once from start to
// end, and on a virtual machine whose page faults are slow (this project's
// benchmark machine takes about 11 µs for the first touch of a 4 KiB page)
// the faults of a 72 MiB buffer were a fifth of a bulk load's plugin time
// (BENCHMARKS.md, "Fresh memory"). The garbage collector does not scan the
// memory: it must hold no Go pointers. unmapRegion returns it.
func mapRegion(n int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // advice only: small pages otherwise
	return b, nil
}

// unmapRegion returns what mapRegion gave; b must be that slice, whole.
func unmapRegion(b []byte) error { return unix.Munmap(b) }
