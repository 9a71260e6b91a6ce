// Package artifact reads and writes snapshot artifacts: a portable, verified
// copy of one fold (its keys, values and revisions, and the cursor they are
// complete up to) that another node imports before replaying only the tail of
// the stream from NATS.
//
// A [Writer] streams records in ascending key order into chunks and seals the
// artifact with a trailer; a [Reader] streams them back one chunk at a time,
// checking every frame as it arrives. The manifest's identity part (bucket,
// stream, scope, transform digest, cursor) is written first, so an importer
// can refuse a foreign artifact before it reads a single record; the counts
// and the content hash come last and [Reader.Next] reports [io.EOF] only once
// they matched, so an importer swaps the imported fold in only after that.
//
// # Format, version 1
//
// This section is the whole specification: a reader written from it alone
// interoperates with this package. Integers are unsigned and little-endian.
// CRC means CRC-32C (the Castagnoli polynomial, reflected 0x82F63B78,
// initial value and final XOR 0xFFFFFFFF, as Go's crc32.Checksum with
// crc32.Castagnoli). Offsets count bytes from the start of the artifact.
// KiB is 1024 bytes, MiB 1024 KiB.
//
//	artifact = magic header chunk* trailer end
//
//	magic    9 bytes   "SLIPSNAP" (53 4C 49 50 53 4E 41 50), then the format version
//	                   as one byte: 0x01
//
//	header   13 bytes  'H' (0x48) | len u32 | pcrc u32 | fcrc u32
//	         len bytes the header manifest, JSON (see below); 1 <= len <= 1 MiB
//
//	chunk    25 bytes  'C' (0x43) | clen u32 | rlen u32 | count u32 | ccrc u32 | rcrc u32 | fcrc u32
//	         clen bytes the chunk's records, Zstandard-compressed (RFC 8878)
//
//	trailer  13 bytes  'T' (0x54) | len u32 | pcrc u32 | fcrc u32
//	         len bytes the trailer manifest, JSON (see below); 1 <= len <= 4 KiB
//
//	end      13 bytes  'E' (0x45) | size u64 | fcrc u32
//
// Every frame starts with a tag byte and a fixed-size frame header whose last
// field, fcrc, is the CRC of the header's bytes before it (the tag included),
// so a length is trusted only once its header checks out. pcrc is the CRC of
// a header or trailer frame's JSON; ccrc the CRC of a chunk's compressed
// bytes, rcrc the CRC of the same bytes decompressed. size in the end frame
// is the end frame's own offset: the length of the artifact before it. The
// end frame is the last frame of the artifact: a reader refuses any byte
// after it, and an artifact that stops anywhere before its end, even exactly
// between two frames, is truncated.
//
// # Chunks
//
// Decompressed, a chunk is exactly rlen bytes holding exactly count records,
// each encoded as
//
//	klen u32 | vlen u32 | revision u64 | key (klen bytes) | value (vlen bytes)
//
// with 1 <= klen <= 64 KiB ([MaxKeySize]) and vlen <= 64 MiB ([MaxValueSize]).
// A chunk holds at least one record (count >= 1, rlen >= 17 * count) and at
// most 64 MiB + 64 KiB + 16 bytes decompressed (one record of the largest
// size); clen is at least 1 and at most that plus 1 MiB, more than any
// Zstandard compressor's worst case. The compressed bytes are Zstandard
// frames whose window and declared content size stay within that same
// decompressed limit (a reader may refuse others); writers write a single
// frame per chunk. Writers fill a chunk while it stays within 1 MiB and
// start a new one for the record that does not fit, so a chunk is at most
// 1 MiB unless it is one larger record alone; readers need not rely on that.
// Keys are in strictly ascending byte order (bytes.Compare) across the
// whole artifact, so no key repeats. An artifact of an empty fold has no
// chunk.
//
// The content hash is the SHA-256 of every chunk's decompressed bytes, in
// order: of the records' encodings concatenated, which does not depend on
// how they were cut into chunks. The byte count is the sum of klen + vlen
// over all records.
//
// # Manifests
//
// Both JSON payloads are a single object encoded in UTF-8, with exactly the
// members listed, in any order, each once, with these names (matched
// case-sensitively), neither they nor a filter null, and nothing after the
// object but JSON whitespace.
// Integers are JSON numbers written without fraction or exponent (a reader
// in a language whose numbers are doubles must parse them as 64-bit
// integers). Times are RFC 3339 strings in UTC with a "Z" suffix and at most
// nine fraction digits, years 0000 to 9999.
//
// The header object has these members:
//
//	format_version    number: 1, the same as the version byte of the magic
//	bucket            string, not empty: the KV bucket
//	stream            string, not empty: the JetStream stream behind the bucket
//	stream_created    time: the stream's creation time, its identity
//	filters           array of strings: the fold's scope filters, possibly []
//	transform_digest  string: the digest of the fold's transform chain
//	cursor            number: the stream sequence the fold was complete up to
//	created           time: when the artifact was written
//	producer          string: the version of the program that wrote it
//	synced_at         time, or "" when unknown: when the exported fold was
//	                  last caught up with the stream, at or before cursor
//
// The strings of the header (bucket, stream, transform_digest, producer and
// every filter), unescaped, total at most 128 KiB of UTF-8, in at most 4096
// filters; so the header's JSON, however escaped, fits in 1 MiB.
//
// The trailer object has these members:
//
//	records           number: the count of records in all chunks
//	bytes             number: the byte count, as above
//	content_hash      string: the content hash, 64 lowercase hex digits
//
// # Reading
//
// [NewReader] consumes the magic and the header and reports the header part
// of the [Manifest]. [Reader.Next] then returns records; it decompresses and
// checks a chunk before it returns any of that chunk's records, and holds one
// chunk in memory at a time. An error from the source is returned wrapped; a
// damaged artifact gives an error wrapping [ErrCorrupt] that names the frame
// (the first chunk is chunk 1) and its offset, and one that ends early wraps
// [ErrTruncated] as well. A file that does not start with the magic is
// refused with [ErrNotArtifact], one of another version with
// [ErrUnsupportedVersion].
package artifact
