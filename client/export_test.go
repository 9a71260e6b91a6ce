package client

// Duplicates is the number of changes watchers dropped as delivered
// already, for the tests.
func Duplicates() int64 { return duplicates.Load() }
