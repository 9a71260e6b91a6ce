package pluginhost

import "strings"

// MallocTunables is the GLIBC_TUNABLES a plugin process starts with when
// the host's own environment does not set that variable: glibc's malloc
// asks for transparent huge pages for the heap it grows (hugetlb=1, where
// the kernel gives them on request), grows it 64 MiB at a time (top_pad)
// and returns freed memory at its top only past 256 MiB (trim_threshold),
// in each of its arenas. Setting either of the last two also fixes the
// mmap threshold at 128 KiB: a block that large is mapped and unmapped
// on its own, as before glibc's first free of one. A store's C code
// (SQLite's page cache and sorter, pebble's block cache) allocates and
// frees many small blocks, and on a virtual machine whose page faults are
// slow their first touch cost more than the store's own work: SQLite's
// bulk load ran 1.5-1.7× as fast with these (BENCHMARKS.md, "Fresh
// memory"). glibc before 2.35 ignores hugetlb, and a C library other than
// glibc ignores the variable. An operator who sets GLIBC_TUNABLES (even to
// nothing) replaces this value.
const MallocTunables = "glibc.malloc.hugetlb=1:glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=67108864"

// pluginEnv is what the plugin's command adds to the environment it
// inherits: MallocTunables unless environ sets GLIBC_TUNABLES.
func pluginEnv(environ []string) []string {
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GLIBC_TUNABLES=") {
			return nil
		}
	}
	return []string{"GLIBC_TUNABLES=" + MallocTunables}
}
