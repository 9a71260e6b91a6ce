package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// decoder decompresses chunks; DecodeAll is safe for concurrent use, so every
// Reader shares it. It refuses to produce more than a chunk can hold.
var decoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		// This bounds the window too: the decoder takes the smaller.
		zstd.WithDecoderMaxMemory(maxChunkRaw))
})

// readStep is how much more of a payload the Reader buffers before it has
// read that much: a length that claims more than the source holds costs
// about twice what is there, not what is claimed.
const readStep = 1 << 20

// Reader reads one artifact and verifies it as it goes. Its methods are not
// safe for concurrent use.
type Reader struct {
	src io.Reader
	off int64 // bytes consumed from src
	m   Manifest
	err error // final: io.EOF once verified, or the first failure

	dec      *zstd.Decoder
	head     [chunkFrameSize]byte
	comp     []byte // the current chunk, compressed
	raw      []byte // the current chunk, decompressed
	pos      int    // offset in raw of the next record
	count    uint32 // records in the current chunk
	left     uint32 // records of the current chunk not yet returned
	chunk    int    // ordinal of the current chunk, from 1
	chunkOff int64  // offset of the current chunk's frame

	last    []byte // the previous record's key
	lastBuf []byte // holds last while raw is overwritten
	sum     hash.Hash
	records uint64
	bytes   uint64
}

// NewReader reads the magic and the header of the artifact in r and returns
// a Reader positioned before the first record. Manifest then reports the
// header. The Reader reads r no further than the end of the artifact, plus
// one byte to make sure nothing follows.
func NewReader(r io.Reader) (*Reader, error) {
	dec, err := decoder()
	if err != nil {
		return nil, fmt.Errorf("artifact: zstd decoder: %w", err)
	}
	ar := &Reader{src: r, dec: dec, sum: sha256.New()}
	if err := ar.readMagic(); err != nil {
		return nil, err
	}
	payload, err := ar.readJSONFrame(tagHeader, "header", maxHeaderSize)
	if err != nil {
		return nil, err
	}
	m, err := decodeHeader(payload)
	if err != nil {
		return nil, ar.corrupt(int64(len(magic)+1), "header", "%v", err)
	}
	ar.m = m
	return ar, nil
}

// Manifest returns the artifact's manifest: the header fields from the
// start, and the trailer fields once Next has returned io.EOF.
func (r *Reader) Manifest() Manifest {
	m := r.m
	m.Filters = append([]string(nil), r.m.Filters...)
	if len(m.Filters) == 0 {
		m.Filters = nil
	}
	return m
}

// Next returns the next record. It returns io.EOF after the last one, once
// the trailer and the end frame were read and the record count, byte count
// and content hash matched; until then, an importer must not take the
// records it has read as a complete fold. Any other error is final and
// returned again by every later call.
//
// The returned record's Key and Value point into the Reader's buffer: they
// are valid only until the next call to Next. Copy what must outlive it.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	if r.left == 0 {
		if err := r.nextFrame(); err != nil {
			r.err = err
			return Record{}, err
		}
	}
	rec, err := r.record()
	if err != nil {
		r.err = err
		return Record{}, err
	}
	return rec, nil
}

// nextFrame reads the frame after a chunk, or after the header: another
// chunk, or the trailer and the end.
func (r *Reader) nextFrame() error {
	at := r.off
	tag := r.head[:1]
	if err := r.readFull(tag, at, "next chunk or trailer"); err != nil {
		return err
	}
	switch tag[0] {
	case tagChunk:
		return r.readChunk(at)
	case tagTrailer:
		return r.finish()
	}
	return r.corrupt(at, "frame", "unknown tag 0x%02x where a chunk ('C') or the trailer ('T') belongs", tag[0])
}

// readChunk reads, checks and decompresses the chunk whose frame starts at
// at, its tag already read.
func (r *Reader) readChunk(at int64) error {
	r.chunk++
	r.chunkOff = at
	where := fmt.Sprintf("chunk %d", r.chunk)
	h := r.head[:chunkFrameSize]
	if err := r.readFull(h[1:], at, where+" frame"); err != nil {
		return err
	}
	if got, want := checksum(h[:21]), binary.LittleEndian.Uint32(h[21:]); got != want {
		return r.corrupt(at, where, "frame header fails its CRC (stored %08x, computed %08x)", want, got)
	}
	clen := binary.LittleEndian.Uint32(h[1:])
	rlen := binary.LittleEndian.Uint32(h[5:])
	count := binary.LittleEndian.Uint32(h[9:])
	ccrc := binary.LittleEndian.Uint32(h[13:])
	rcrc := binary.LittleEndian.Uint32(h[17:])
	switch {
	case clen == 0 || clen > maxChunkComp:
		return r.corrupt(at, where, "compressed length %d is outside 1 to %d", clen, maxChunkComp)
	case rlen > maxChunkRaw:
		return r.corrupt(at, where, "decompressed length %d is over the limit of %d", rlen, maxChunkRaw)
	case count == 0:
		return r.corrupt(at, where, "holds no record")
	case uint64(count)*(recordHeadSize+1) > uint64(rlen):
		return r.corrupt(at, where, "%d records cannot fit in %d bytes", count, rlen)
	}
	if cap(r.raw) > 2*chunkTarget && rlen <= chunkTarget {
		// The previous chunk was one outsized record: let its
		// buffers go rather than hold them for the Reader's life.
		r.comp, r.raw = nil, nil
	}
	var err error
	r.comp, err = r.readPayload(r.comp, int(clen), at, where+" frame")
	if err != nil {
		return err
	}
	if got := checksum(r.comp); got != ccrc {
		return r.corrupt(at, where, "compressed bytes fail their CRC (stored %08x, computed %08x)", ccrc, got)
	}
	// Keep the previous key: raw is about to be overwritten.
	r.lastBuf = append(r.lastBuf[:0], r.last...)
	r.last = r.lastBuf
	raw, err := r.dec.DecodeAll(r.comp, r.raw[:0])
	if err != nil {
		return r.corrupt(at, where, "zstd: %v", err)
	}
	r.raw = raw
	if len(raw) != int(rlen) {
		return r.corrupt(at, where, "decompresses to %d bytes, its header says %d", len(raw), rlen)
	}
	if got := checksum(raw); got != rcrc {
		return r.corrupt(at, where, "decompressed bytes fail their CRC (stored %08x, computed %08x)", rcrc, got)
	}
	r.sum.Write(raw)
	r.pos, r.count, r.left = 0, count, count
	return nil
}

// record decodes the next record of the current chunk.
func (r *Reader) record() (Record, error) {
	n := r.count - r.left + 1 // the record's ordinal in its chunk
	rest := r.raw[r.pos:]
	bad := func(format string, args ...any) (Record, error) {
		return Record{}, r.corrupt(r.chunkOff, fmt.Sprintf("chunk %d", r.chunk), "record %d: %s", n, fmt.Sprintf(format, args...))
	}
	if len(rest) < recordHeadSize {
		return bad("only %d bytes remain for its %d-byte head", len(rest), recordHeadSize)
	}
	klen := binary.LittleEndian.Uint32(rest)
	vlen := binary.LittleEndian.Uint32(rest[4:])
	rev := binary.LittleEndian.Uint64(rest[8:])
	switch {
	case klen == 0:
		return bad("empty key")
	case klen > MaxKeySize:
		return bad("key of %d bytes, at most %d", klen, MaxKeySize)
	case vlen > MaxValueSize:
		return bad("value of %d bytes, at most %d", vlen, MaxValueSize)
	}
	size := recordHeadSize + int(klen) + int(vlen)
	if size > len(rest) {
		return bad("needs %d bytes, only %d remain in the chunk", size, len(rest))
	}
	kEnd := recordHeadSize + int(klen)
	key := rest[recordHeadSize:kEnd:kEnd]
	value := rest[kEnd:size:size]
	if r.records > 0 && bytes.Compare(key, r.last) <= 0 {
		return bad("key %s does not sort after the previous key %s", showKey(key), showKey(r.last))
	}
	r.pos += size
	r.left--
	if r.left == 0 && r.pos != len(r.raw) {
		return bad("%d bytes follow the chunk's last record", len(r.raw)-r.pos)
	}
	r.last = key
	r.records++
	r.bytes += uint64(klen) + uint64(vlen)
	return Record{Key: key, Value: value, Revision: rev}, nil
}

// finish reads the trailer, its tag already read, and the end frame, checks
// them against what the chunks held, and makes sure nothing follows.
func (r *Reader) finish() error {
	at := r.off - 1
	payload, err := r.readJSONFrameAt(at, "trailer", maxTrailerSize)
	if err != nil {
		return err
	}
	t, err := decodeTrailer(payload)
	if err != nil {
		return r.corrupt(at, "trailer", "%v", err)
	}
	sum := hex.EncodeToString(r.sum.Sum(nil))
	switch {
	case t.records != r.records:
		return r.corrupt(at, "trailer", "records: the trailer says %d, the chunks held %d", t.records, r.records)
	case t.bytes != r.bytes:
		return r.corrupt(at, "trailer", "bytes: the trailer says %d, the records held %d", t.bytes, r.bytes)
	case t.contentHash != sum:
		return r.corrupt(at, "trailer", "content hash: the trailer says %q, the records hash to %s", t.contentHash, sum)
	}

	at = r.off
	e := r.head[:endFrameSize]
	if err := r.readFull(e, at, "end frame"); err != nil {
		return err
	}
	if e[0] != tagEnd {
		return r.corrupt(at, "end frame", "tag 0x%02x, want 'E'", e[0])
	}
	if got, want := checksum(e[:9]), binary.LittleEndian.Uint32(e[9:]); got != want {
		return r.corrupt(at, "end frame", "fails its CRC (stored %08x, computed %08x)", want, got)
	}
	if size := binary.LittleEndian.Uint64(e[1:]); size != uint64(at) {
		return r.corrupt(at, "end frame", "says it is at offset %d", size)
	}

	var extra [1]byte
	n, err := io.ReadFull(r.src, extra[:])
	if n > 0 {
		return r.corrupt(r.off, "end", "bytes follow the end frame (trailing garbage)")
	}
	if err != io.EOF {
		return fmt.Errorf("artifact: reading past the end frame at offset %d: %w", r.off, err)
	}
	r.m.Records, r.m.Bytes, r.m.ContentHash = t.records, t.bytes, t.contentHash
	return io.EOF
}

func (r *Reader) readMagic() error {
	var b [len(magic) + 1]byte
	n, err := io.ReadFull(r.src, b[:])
	r.off += int64(n)
	if m := min(n, len(magic)); string(b[:m]) != magic[:m] {
		return fmt.Errorf("%w: it starts with %q, not %q", ErrNotArtifact, b[:m], magic)
	}
	if err != nil {
		return r.readError(err, 0, "magic")
	}
	if v := b[len(magic)]; v != FormatVersion {
		return fmt.Errorf("%w: the artifact is format version %d; this reader knows version %d", ErrUnsupportedVersion, v, FormatVersion)
	}
	return nil
}

// readJSONFrame reads a header or trailer frame, tag included, and returns
// its checked payload.
func (r *Reader) readJSONFrame(tag byte, where string, limit uint32) ([]byte, error) {
	at := r.off
	if err := r.readFull(r.head[:1], at, where+" frame"); err != nil {
		return nil, err
	}
	if r.head[0] != tag {
		return nil, r.corrupt(at, where, "tag 0x%02x, want %q", r.head[0], tag)
	}
	return r.readJSONFrameAt(at, where, limit)
}

// readJSONFrameAt reads the rest of the JSON frame at at, its tag already
// in r.head[0].
func (r *Reader) readJSONFrameAt(at int64, where string, limit uint32) ([]byte, error) {
	h := r.head[:jsonFrameSize]
	if err := r.readFull(h[1:], at, where+" frame"); err != nil {
		return nil, err
	}
	if got, want := checksum(h[:9]), binary.LittleEndian.Uint32(h[9:]); got != want {
		return nil, r.corrupt(at, where, "frame header fails its CRC (stored %08x, computed %08x)", want, got)
	}
	n := binary.LittleEndian.Uint32(h[1:])
	pcrc := binary.LittleEndian.Uint32(h[5:])
	if n == 0 || n > limit {
		return nil, r.corrupt(at, where, "length %d is outside 1 to %d", n, limit)
	}
	p, err := r.readPayload(nil, int(n), at, where+" frame")
	if err != nil {
		return nil, err
	}
	if got := checksum(p); got != pcrc {
		return nil, r.corrupt(at, where, "payload fails its CRC (stored %08x, computed %08x)", pcrc, got)
	}
	return p, nil
}

// readPayload reads n bytes of the frame at at into buf, growing buf only
// as the bytes arrive.
func (r *Reader) readPayload(buf []byte, n int, at int64, what string) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < n {
		step := min(n-len(buf), max(len(buf), readStep))
		if cap(buf)-len(buf) < step {
			grown := make([]byte, len(buf), len(buf)+step)
			copy(grown, buf)
			buf = grown
		}
		got, err := io.ReadFull(r.src, buf[len(buf):len(buf)+step])
		r.off += int64(got)
		if err != nil {
			return buf, r.readError(err, at, what)
		}
		buf = buf[:len(buf)+step]
	}
	return buf, nil
}

// readFull fills p from the source, for part of the frame at at.
func (r *Reader) readFull(p []byte, at int64, what string) error {
	n, err := io.ReadFull(r.src, p)
	r.off += int64(n)
	if err != nil {
		return r.readError(err, at, what)
	}
	return nil
}

// readError describes a failed read of what, which starts at offset at.
func (r *Reader) readError(err error, at int64, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if at == r.off {
			return fmt.Errorf("%w: the artifact ends at offset %d, where its %s belongs", ErrTruncated, r.off, what)
		}
		return fmt.Errorf("%w: the artifact ends at offset %d, %d bytes into the %s at offset %d",
			ErrTruncated, r.off, r.off-at, what, at)
	}
	return fmt.Errorf("artifact: reading the %s at offset %d: %w", what, at, err)
}

func (r *Reader) corrupt(at int64, where, format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d: %s", ErrCorrupt, where, at, fmt.Sprintf(format, args...))
}
