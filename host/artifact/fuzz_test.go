package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// FuzzReader feeds the reader arbitrary bytes, as they come and once more
// repaired (see repair) so that the fuzzer's changes get past the CRCs and
// the trailer to the parsing behind them. The reader must not panic; every
// failure must be one of the package's sentinels (the source, a byte slice,
// cannot fail) and final; and whatever it accepts must re-encode, through a
// Writer given the same manifest, to an artifact of the same records, counts
// and content hash.
func FuzzReader(f *testing.F) {
	small, _ := write(f, testManifest(), genRecords(8, 20))
	empty, _ := write(f, Manifest{Bucket: "b", Stream: "KV_b"}, nil)
	odd, _ := write(f, Manifest{Bucket: "\u2028", Stream: "s", Filters: []string{"", "<>"}}, []Record{
		{Key: []byte{0}, Value: nil, Revision: 0},
		{Key: []byte{0, 0}, Value: []byte{0xff}, Revision: 1<<64 - 1},
	})
	recs := genRecords(9, 21)
	c := craft(f, headerJSON(nil))
	c.chunk(specRecords(recs[:2]), 2)
	c.chunk(specRecords(recs[2:3]), 1)
	c.chunk(specRecords(recs[3:]), 6)
	c.trailer(recs)
	c.end()
	for _, seed := range [][]byte{small, empty, odd, c.b, small[:len(small)-1], append(bytes.Clone(empty), 0), []byte("SLIPSNAP\x01"), nil} {
		f.Add(seed)
	}

	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<20))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkInput(t, data)
		if fixed := repair(dec, data); !bytes.Equal(fixed, data) {
			checkInput(t, fixed)
		}
	})
}

func checkInput(t *testing.T, data []byte) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotArtifact) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("NewReader: %v wraps no sentinel", err)
		}
		return
	}
	head := r.Manifest()
	var got []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Next: %v does not wrap ErrCorrupt", err)
			}
			if _, again := r.Next(); again != err {
				t.Fatalf("Next after %v: %v, want the same error", err, again)
			}
			return
		}
		if len(rec.Key) == 0 || len(rec.Key) > MaxKeySize || len(rec.Value) > MaxValueSize {
			t.Fatalf("a record out of bounds: %d-byte key, %d-byte value", len(rec.Key), len(rec.Value))
		}
		got = append(got, Record{Key: bytes.Clone(rec.Key), Value: bytes.Clone(rec.Value), Revision: rec.Revision})
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next after io.EOF: %v", err)
	}
	m := r.Manifest()
	tail := m
	tail.Records, tail.Bytes, tail.ContentHash = 0, 0, ""
	if !reflect.DeepEqual(tail, head) {
		t.Fatalf("the header changed while reading: %+v, then %+v", head, m)
	}
	if m.Records != uint64(len(got)) || m.Bytes != bytesOf(got) || m.ContentHash != specHash(got) {
		t.Fatalf("accepted a trailer of %d records, %d bytes, hash %s for %d records, %d bytes, hash %s",
			m.Records, m.Bytes, m.ContentHash, len(got), bytesOf(got), specHash(got))
	}

	var buf bytes.Buffer
	w, err := NewWriter(&buf, m)
	if err != nil {
		t.Fatalf("NewWriter refuses the manifest the reader accepted: %v", err)
	}
	for _, rec := range got {
		if err := w.Add(rec); err != nil {
			t.Fatalf("Add refuses a record the reader accepted: %v", err)
		}
	}
	again, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, m) {
		t.Fatalf("re-encoded manifest\n%+v\nwant\n%+v", again, m)
	}
	back, mBack, err := readAll(&buf)
	if err != nil {
		t.Fatalf("reading the re-encoded artifact: %v", err)
	}
	sameRecords(t, back, got)
	if !reflect.DeepEqual(mBack, m) {
		t.Fatalf("re-encoded artifact reads back as\n%+v\nwant\n%+v", mBack, m)
	}
}

// repair returns data with every frame it can follow made consistent the
// way a writer would: the frame CRCs, the payload CRCs, a chunk's
// decompressed length and CRC, the trailer's counts and hash (when the
// records can be walked), the end frame's size. What it cannot follow it
// leaves as it is.
func repair(dec *zstd.Decoder, data []byte) []byte {
	if len(data) < 9 {
		return data
	}
	le := binary.LittleEndian
	b := bytes.Clone(data)
	sum := sha256.New()
	var records, size uint64
	for off := 9; off < len(b); {
		switch b[off] {
		case 'H', 'T':
			if off+13 > len(b) {
				return b
			}
			end := off + 13 + int(le.Uint32(b[off+1:]))
			if end > len(b) || end < off {
				return b
			}
			if b[off] == 'T' {
				payload := fmt.Appendf(nil, `{"records":%d,"bytes":%d,"content_hash":%q}`, records, size, hex.EncodeToString(sum.Sum(nil)))
				b = append(b[:off+13:off+13], append(payload, b[end:]...)...)
				le.PutUint32(b[off+1:], uint32(len(payload)))
				end = off + 13 + len(payload)
			}
			le.PutUint32(b[off+5:], crc(b[off+13:end]))
			le.PutUint32(b[off+9:], crc(b[off:off+9]))
			off = end
		case 'C':
			if off+25 > len(b) {
				return b
			}
			end := off + 25 + int(le.Uint32(b[off+1:]))
			if end > len(b) || end < off {
				return b
			}
			comp := b[off+25 : end]
			le.PutUint32(b[off+13:], crc(comp))
			if raw, err := dec.DecodeAll(comp, nil); err == nil {
				le.PutUint32(b[off+5:], uint32(len(raw)))
				le.PutUint32(b[off+17:], crc(raw))
				sum.Write(raw)
				for p := 0; p+16 <= len(raw); {
					n := 16 + uint64(le.Uint32(raw[p:])) + uint64(le.Uint32(raw[p+4:]))
					if n > uint64(len(raw)-p) {
						break
					}
					records++
					size += n - 16
					p += int(n)
				}
			}
			le.PutUint32(b[off+21:], crc(b[off:off+21]))
			off = end
		case 'E':
			if off+13 > len(b) {
				return b
			}
			le.PutUint64(b[off+1:], uint64(off))
			le.PutUint32(b[off+9:], crc(b[off:off+9]))
			return b
		default:
			return b
		}
	}
	return b
}
