package fold

// SetImportBatch makes imports cut batches of at most entries records, so
// that a small artifact goes to the store in many; the returned func
// restores the bound. Not for tests that run in parallel.
func SetImportBatch(entries int) (restore func()) {
	old := importBatchEntries
	importBatchEntries = entries
	return func() { importBatchEntries = old }
}
