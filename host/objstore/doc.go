// Package objstore carries artifacts (package artifact) through a NATS
// JetStream Object Store: exporters publish a series' current artifact,
// importers open it. A series is named by a URL nats-object://BUCKET/NAME
// (ParseURL).
//
// # Buckets and keys
//
// A Store works on three buckets, created by New when missing (with
// Options.Replicas; nodes racing to create them end bound to the same ones):
//
//   - the Object Store BUCKET holds the payloads: one object per artifact,
//     named NAME/DIGEST.slipsnap, where DIGEST is the SHA-256 of the
//     artifact's bytes in lowercase hex. Equal names are equal bytes, so an
//     object is never overwritten with other content. (The artifact's own
//     content hash covers only its records: two artifacts at different
//     cursors can share it, so it cannot name a payload.)
//   - the KV bucket BUCKET_pointers (Options.PointerBucket) holds, under the
//     key NAME, the series' pointer: a JSON Pointer naming the current
//     payload and what it holds (object, content hash, cursor, records,
//     bytes, size, bucket, stream, stream creation time, created, producer,
//     exporter, and the object it named before). It keeps
//     Options.PointerHistory revisions, for operators.
//   - the KV bucket BUCKET_leases (Options.LeaseBucket) holds, under the key
//     NAME, the export lease: a key created with a per-message TTL, so the
//     bucket allows message TTLs (a limit marker TTL of 1s), which needs
//     nats-server 2.11 or later.
//
// # Publishing
//
// Publish writes the artifact to a temp file (memory stays bounded), reads
// it back to verify it and to know its manifest, uploads it under its
// digest name, and only then moves the pointer, by compare-and-swap: Create
// when there is no pointer, Update at the revision read otherwise; a lost
// swap re-reads the pointer and decides again. decidePointer is the rule:
// the pointer only moves forward, to a higher cursor of the same stream or
// to a stream created later (a recreated stream starts its cursors again).
// An export at the pointer's cursor and content hash is already published:
// nothing moves, and Publish succeeds. Any other export that is not ahead is
// superseded: Publish returns an error wrapping ErrSuperseded that names
// both cursors, and removes the payload it uploaded unless the pointer
// names it. So a slow exporter cannot move the pointer back, whatever the
// interleaving.
//
// # Pruning
//
// Prune removes the series' payloads that the pointer does not name and that
// the server last modified more than a grace period ago (ages are the
// server's times against the server's clock). The object the pointer named
// before its last move is kept too, until the grace has passed since that
// move, for readers still downloading it. The pointer is read again right
// before each removal.
//
// Pruning races with publishing: an exporter's upload is unnamed until its
// swap lands. Publish therefore names an upload only within
// Options.PublishWindow of the upload's start (by the exporter's monotonic
// clock; else ErrPublishWindow and the payload is removed), and Prune
// refuses a grace shorter than that window. A payload a pruner finds older
// than the grace was uploaded more than a window before the pruner looked,
// so its exporter can no longer name it; one the pointer names by the time
// the pruner re-reads the pointer is kept. The window must exceed the
// longest upload; the grace should exceed the window by a margin for the
// swap's round trip (the window is checked just before the swap is sent)
// and for the drift between the server's clock and the exporters'. With the
// defaults, a window of 10 minutes, a grace of an hour is ample.
//
// # Crashes
//
// Nothing is overwritten and the pointer moves in one atomic swap, so a
// crash at any step leaves the previous pointer and its payload intact and
// readable. A crash between the upload and the swap leaves an orphan
// payload, named by nothing; Prune removes it once it is older than the
// grace. An error of the swap itself (the swap may have landed) leaves the
// payload too. A crash during the upload leaves chunks without the object's
// metadata, which is written last: no object is listed, nothing can name
// it, and Prune does not see those chunks (they stay in the bucket's
// stream; see the Object Store's own limits).
//
// # Opening
//
// Open reads the pointer and opens the payload it names; when the payload
// is gone (a pruner removed it after the pointer moved on), it reads
// the pointer again, a bounded number of times (Options.OpenRetries). The
// payload is checked against its digest as it is read, and is an artifact
// for artifact.NewReader.
//
// # Export lease
//
// TryLease takes the lease by creating its key with a TTL: one holder per
// series at a time, so that one node per round exports. The server deletes
// the key when the TTL passes, so a dead holder's lease ends by itself and
// no node compares wall clocks; Release deletes it earlier, only at the
// lease's own revision, so a lease that expired and was taken by another
// holder stays theirs. The lease saves duplicated work; it is not needed
// for correctness, which the pointer's swap keeps on its own.
//
// # Model
//
// The decisions of the protocol are pure functions (decidePointer,
// withinWindow, removable, retained, prunable, leaseOutcome,
// releaseRevision), apart from the I/O. model_test.go runs them in a model
// of racing exporters (one of them taking no lease), crashes, recreated
// streams, interleaved pruning and lease expiry in model time;
// mutants_test.go shows that broken variants of them fail it.
package objstore
