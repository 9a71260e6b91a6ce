package store

// PagesWritten is how many pages the store's writer has written to the WAL
// since it opened: BenchmarkApply reports it per entry.
func PagesWritten(s *Store) int64 { return s.raw.pagesWritten() }
