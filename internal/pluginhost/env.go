package pluginhost

import "strings"

// MallocTunables is the GLIBC_TUNABLES a plugin process starts with when
// the host's own environment does not set that variable: glibc's malloc
// asks for transparent huge pages for the heap it grows (hugetlb=1, where
// the kernel gives them on request), and keeps what it frees instead of
// returning it to the kernel at once (trim_threshold, top_pad). A store's
// C code (SQLite's page cache and sorter, pebble's block cache and
// memtables) allocates and frees much memory, and on a virtual machine
// whose page faults are slow the first touch of each page cost more than
// the store's own work: SQLite's bulk load ran 1.5-1.7× as fast with these
// (BENCHMARKS.md, "Fresh memory"). glibc before 2.35 ignores hugetlb, and
// a C library other than glibc ignores the variable. An operator who sets
// GLIBC_TUNABLES (even to nothing) replaces this value.
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
