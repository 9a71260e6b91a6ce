package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// countRead reads an artifact to its end without keeping the records, and
// returns how many it got before the end or the first error.
func countRead(data []byte) (int, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	for n := 0; ; n++ {
		if _, err := r.Next(); err != nil {
			if err == io.EOF {
				err = nil
			}
			return n, err
		}
	}
}

// corruptionSubject is an artifact of a few chunks and its frames.
func corruptionSubject(t *testing.T) ([]byte, []frame) {
	data, _ := write(t, testManifest(), genRecords(15000, 10))
	frames := walk(t, data)
	chunks := 0
	for _, f := range frames {
		if f.tag == 'C' {
			chunks++
		}
	}
	if chunks < 3 {
		t.Fatalf("%d chunks, want at least 3", chunks)
	}
	return data, frames
}

// TestFlippedByte changes one byte at a time, in the magic, all over every
// frame header, the header and trailer JSON and the end frame, and across
// every chunk's compressed bytes. Each must fail, at the frame it hit and
// before any record of that frame is returned.
func TestFlippedByte(t *testing.T) {
	data, frames := corruptionSubject(t)
	type spot struct {
		pos   int
		frame int // index in frames; -1 for the magic
	}
	var spots []spot
	for i := range 9 {
		spots = append(spots, spot{i, -1})
	}
	for i, f := range frames {
		if f.tag == 'C' {
			for p := f.off; p < f.body; p++ {
				spots = append(spots, spot{p, i})
			}
			const samples = 48
			for k := range samples {
				spots = append(spots, spot{f.body + k*(f.end-f.body-1)/(samples-1), i})
			}
			continue
		}
		for p := f.off; p < f.end; p++ {
			spots = append(spots, spot{p, i})
		}
	}

	buf := bytes.Clone(data)
	for _, s := range spots {
		for _, mask := range []byte{0x01, 0xff} {
			buf[s.pos] ^= mask
			n, err := countRead(buf)
			buf[s.pos] ^= mask
			if err == nil {
				t.Fatalf("byte %d ^ %#x: read as a valid artifact of %d records", s.pos, mask, n)
			}
			if s.frame < 0 {
				if !errors.Is(err, ErrNotArtifact) && !errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("magic byte %d ^ %#x: %v", s.pos, mask, err)
				}
				continue
			}
			f := frames[s.frame]
			// Every length is under a frame CRC, so a flip is never
			// taken for a truncation, and the error names its frame.
			if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d:", f.off)) {
				t.Fatalf("byte %d ^ %#x in the %c frame at %d: %v, want ErrCorrupt naming that frame", s.pos, mask, f.tag, f.off, err)
			}
			if f.tag == 'C' && s.pos >= f.body && !strings.Contains(err.Error(), "compressed bytes fail their CRC") {
				t.Fatalf("byte %d ^ %#x in the compressed bytes of the chunk at %d: %v, want a CRC failure", s.pos, mask, f.off, err)
			}
			before := 0
			for _, g := range frames[:s.frame] {
				before += int(g.count)
			}
			if n != before {
				t.Fatalf("byte %d ^ %#x in the %c frame at %d: %d records returned before the error, want %d", s.pos, mask, f.tag, f.off, n, before)
			}
		}
	}
	t.Logf("%d bytes flipped two ways each, all refused", len(spots))
}

func TestTruncated(t *testing.T) {
	data, frames := corruptionSubject(t)
	cuts := map[int]bool{len(data) - 1: true}
	for i := range 40 {
		cuts[i] = true
	}
	for _, f := range frames {
		for _, p := range []int{f.off - 1, f.off, f.off + 1, f.body - 1, f.body, f.body + 1, f.end - 1} {
			if p >= 0 && p < len(data) {
				cuts[p] = true
			}
		}
	}
	rng := rand.New(rand.NewPCG(11, 11))
	for range 40 {
		cuts[rng.IntN(len(data))] = true
	}
	for cut := range cuts {
		_, err := countRead(data[:cut])
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("cut at %d of %d: %v, want a truncation error", cut, len(data), err)
		}
	}
	// Cut exactly between frames, where a careless reader would stop.
	for _, f := range frames[1:] {
		if _, err := countRead(data[:f.off]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut before the %c frame at %d: %v", f.tag, f.off, err)
		}
	}
}

func TestTrailingGarbage(t *testing.T) {
	data, _ := write(t, testManifest(), genRecords(100, 12))
	for name, extra := range map[string][]byte{
		"one zero byte": {0},
		"a newline":     []byte("\n"),
		"a second copy": data,
	} {
		n, err := countRead(append(bytes.Clone(data), extra...))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "trailing") {
			t.Fatalf("%s after the end: %v, want a trailing garbage error", name, err)
		}
		if n != 100 {
			t.Fatalf("%s: %d records before the error", name, n)
		}
	}
}

func TestMagicAndVersion(t *testing.T) {
	data, _ := write(t, testManifest(), genRecords(10, 13))
	cases := []struct {
		input []byte
		want  error
		msg   string
	}{
		{[]byte("PK\x03\x04 a zip file, not an artifact"), ErrNotArtifact, "not a slipstream artifact"},
		{append([]byte("SLIPSNAQ"), data[8:]...), ErrNotArtifact, "SLIPSNAQ"},
		{append([]byte("SLIPSNAP\x02"), data[9:]...), ErrUnsupportedVersion, "version 2"},
		{append([]byte("SLIPSNAP\x00"), data[9:]...), ErrUnsupportedVersion, "version 0"},
		{[]byte("SLIPSN"), ErrTruncated, "truncated"},
		{nil, ErrTruncated, "truncated"},
		{[]byte("X"), ErrNotArtifact, ""},
	}
	for _, c := range cases {
		_, err := NewReader(bytes.NewReader(c.input))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: %v, want %v mentioning %q", c.input[:min(len(c.input), 12)], err, c.want, c.msg)
		}
	}
}

// TestBadHeaders: header frames whose CRCs are right but whose JSON breaks
// the spec are refused by NewReader, before any record.
func TestBadHeaders(t *testing.T) {
	cases := map[string]map[string]string{
		"version 2 behind magic 1": {"format_version": `2`},
		"version as a string":      {"format_version": `"1"`},
		"version with a fraction":  {"format_version": `1.0`},
		"no bucket":                {"bucket": ""},
		"empty bucket":             {"bucket": `""`},
		"null bucket":              {"bucket": `null`},
		"null filters":             {"filters": `null`},
		"a null filter":            {"filters": `["a",null]`},
		"filters not strings":      {"filters": `[1]`},
		"negative cursor":          {"cursor": `-1`},
		"cursor past uint64":       {"cursor": `18446744073709551616`},
		"time not UTC":             {"created": `"2026-01-01T00:00:00+01:00"`},
		"synced_at not UTC":        {"synced_at": `"2026-01-01T00:00:00+01:00"`},
		"synced_at null":           {"synced_at": `null`},
		"time not RFC 3339":        {"stream_created": `"yesterday"`},
		"unknown member":           {"+": `,"extra":1`},
		"repeated member":          {"+": `,"bucket":"other"`},
		"member in other case":     {"+": `,"Bucket":"other"`},
		"trailer member in header": {"+": `,"records":0`},
		"no created":               {"created": ""},
	}
	for name, edit := range cases {
		_, err := NewReader(bytes.NewReader(craft(t, headerJSON(edit)).b))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "header at offset 9") {
			t.Errorf("%s: %v, want ErrCorrupt naming the header", name, err)
		}
	}
	for name, payload := range map[string]string{
		"not an object":   `[1]`,
		"trailing value":  string(headerJSON(nil)) + ` {}`,
		"invalid UTF-8":   strings.Replace(string(headerJSON(nil)), "hand", "h\xffnd", 1),
		"truncated JSON":  string(headerJSON(nil))[:40],
		"an empty string": ``,
	} {
		_, err := NewReader(bytes.NewReader(craft(t, []byte(payload)).b))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	// Whitespace around and inside the object is JSON, and fine.
	c := craft(t, []byte(" \n"+strings.ReplaceAll(string(headerJSON(nil)), ",", " ,\t")+"\r\n"))
	c.trailer(nil)
	c.end()
	if _, err := countRead(c.b); err != nil {
		t.Errorf("a header with whitespace: %v", err)
	}
}

// TestBadChunks: chunks and trailers whose CRCs are right but whose content
// breaks the spec.
func TestBadChunks(t *testing.T) {
	recs := genRecords(20, 14)
	rec := func(klen, vlen uint32, key string) []byte {
		b := specRecords([]Record{{Key: []byte(key), Value: []byte("v"), Revision: 9}})
		copy(b, []byte{byte(klen), byte(klen >> 8), byte(klen >> 16), byte(klen >> 24), byte(vlen), byte(vlen >> 8), byte(vlen >> 16), byte(vlen >> 24)})
		return b
	}
	cases := []struct {
		name  string
		build func(c *crafted)
		msg   string
	}{
		{"keys out of order in a chunk", func(c *crafted) {
			c.chunk(specRecords([]Record{recs[1], recs[0]}), 2)
		}, "does not sort after"},
		{"keys out of order across chunks", func(c *crafted) {
			c.chunk(specRecords(recs[5:6]), 1)
			c.chunk(specRecords(recs[4:5]), 1)
		}, "does not sort after"},
		{"a key repeated across chunks", func(c *crafted) {
			c.chunk(specRecords(recs[:3]), 3)
			c.chunk(specRecords(recs[2:4]), 2)
		}, "does not sort after"},
		{"an empty key", func(c *crafted) {
			c.chunk(specRecords([]Record{{Key: []byte{}, Value: []byte("0123456789abcdef")}}), 1)
		}, "empty key"},
		{"a key over the limit", func(c *crafted) { c.chunk(rec(MaxKeySize+1, 1, "k"), 1) }, "key of"},
		{"a key length of 4 GiB", func(c *crafted) { c.chunk(rec(0xffffffff, 1, "k"), 1) }, "key of"},
		{"a value length of 4 GiB", func(c *crafted) { c.chunk(rec(1, 0xffffffff, "k"), 1) }, "value of"},
		{"a value past the chunk", func(c *crafted) { c.chunk(rec(1, 2, "k"), 1) }, "remain in the chunk"},
		{"fewer records than counted", func(c *crafted) { c.chunk(specRecords(recs[:3]), 4) }, "remain for its"},
		{"more records than counted", func(c *crafted) { c.chunk(specRecords(recs[:3]), 2) }, "follow the chunk's last record"},
		{"no record", func(c *crafted) { c.chunk(nil, 0) }, "holds no record"},
		{"count too large for the bytes", func(c *crafted) { c.chunk(specRecords(recs[:1]), 3) }, "cannot fit"},
		{"decompresses longer than said", func(c *crafted) {
			c.chunkRaw(specRecords(recs[:2]), uint32(len(specRecords(recs[:1]))), 1)
		}, "decompresses to"},
		{"not zstd", func(c *crafted) {
			junk := []byte("these bytes are not a zstd frame")
			c.chunkHead(uint32(len(junk)), 40, 1, crc(junk), 0)
			c.b = append(c.b, junk...)
		}, "zstd"},
		{"a zstd bomb", func(c *crafted) {
			c.chunkRaw(make([]byte, 8<<20), 100, 1)
		}, "chunk 1"},
		{"a wrong CRC of the compressed bytes", func(c *crafted) {
			raw := specRecords(recs[:2])
			comp := zstdEncode(t, raw)
			c.chunkHead(uint32(len(comp)), uint32(len(raw)), 2, crc(comp)^1, crc(raw))
			c.b = append(c.b, comp...)
		}, "compressed bytes fail their CRC"},
		{"a wrong CRC of the decompressed bytes", func(c *crafted) {
			raw := specRecords(recs[:2])
			comp := zstdEncode(t, raw)
			c.chunkHead(uint32(len(comp)), uint32(len(raw)), 2, crc(comp), crc(raw)^1)
			c.b = append(c.b, comp...)
		}, "decompressed bytes fail their CRC"},
		{"a zero tag", func(c *crafted) {
			c.b = append(c.b, 0)
		}, "unknown tag 0x00"},
		{"an unknown frame", func(c *crafted) {
			c.b = append(c.b, 'X')
		}, "unknown tag 0x58"},
		{"the end frame first", func(c *crafted) { c.end() }, "unknown tag 0x45"},
	}
	for _, tc := range cases {
		c := craft(t, headerJSON(nil))
		tc.build(c)
		c.trailer(recs)
		c.end()
		_, err := countRead(c.b)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want ErrCorrupt mentioning %q", tc.name, err, tc.msg)
		}
	}

	trailers := []struct {
		name  string
		build func(c *crafted)
		msg   string
	}{
		{"a record count too high", func(c *crafted) { c.trailerOf(4, 0, specHash(recs[:3])) }, "records: the trailer says 4"},
		{"a record count too low", func(c *crafted) { c.trailerOf(2, 0, specHash(recs[:3])) }, "records: the trailer says 2"},
		{"a wrong byte count", func(c *crafted) { c.trailerOf(3, 1, specHash(recs[:3])) }, "bytes: the trailer says 1"},
		{"a wrong hash", func(c *crafted) { c.trailerOf(3, bytesOf(recs[:3]), specHash(recs[:2])) }, "content hash"},
		{"an uppercase hash", func(c *crafted) {
			c.trailerOf(3, bytesOf(recs[:3]), strings.ToUpper(specHash(recs[:3])))
		}, "content hash"},
		{"a trailer member missing", func(c *crafted) { c.json('T', []byte(`{"records":3,"bytes":1}`)) }, "missing"},
		{"a header for a trailer", func(c *crafted) { c.json('H', headerJSON(nil)) }, "unknown tag 0x48"},
	}
	for _, tc := range trailers {
		c := craft(t, headerJSON(nil))
		c.chunk(specRecords(recs[:3]), 3)
		tc.build(c)
		c.end()
		n, err := countRead(c.b)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want ErrCorrupt mentioning %q", tc.name, err, tc.msg)
		}
		if n != 3 {
			t.Errorf("%s: %d records before the error, want 3", tc.name, n)
		}
	}

	c := craft(t, headerJSON(nil))
	c.trailer(nil)
	c.endAt(12345)
	if _, err := countRead(c.b); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "says it is at offset 12345") {
		t.Errorf("an end frame with a wrong size: %v", err)
	}
}

func bytesOf(recs []Record) uint64 {
	var n uint64
	for _, r := range recs {
		n += uint64(len(r.Key) + len(r.Value))
	}
	return n
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHostileLengths: lengths a hostile artifact claims, with frame CRCs
// that match, are refused or cost only what the file really holds.
func TestHostileLengths(t *testing.T) {
	tail := bytes.Repeat([]byte{0x28}, 4096) // some bytes, far fewer than claimed
	cases := []struct {
		name  string
		build func(c *crafted)
		want  error
		msg   string
	}{
		{"a 4 GiB chunk", func(c *crafted) { c.chunkHead(0xffffffff, 100, 1, 0, 0) }, ErrCorrupt, "compressed length 4294967295"},
		{"a 4 GiB decompressed chunk", func(c *crafted) { c.chunkHead(100, 0xffffffff, 1, 0, 0) }, ErrCorrupt, "decompressed length 4294967295"},
		{"4 G records", func(c *crafted) { c.chunkHead(100, maxChunkRaw, 0xffffffff, 0, 0) }, ErrCorrupt, "cannot fit"},
		{"a chunk of the largest size, mostly missing", func(c *crafted) { c.chunkHead(maxChunkComp, maxChunkRaw, 1, 0, 0) }, ErrTruncated, "truncated"},
		{"a 4 GiB trailer", func(c *crafted) {
			c.b = append(c.b, 'T', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0)
			c.b = append(c.b, le32(crc(c.b[len(c.b)-9:]))...)
		}, ErrCorrupt, "length 4294967295"},
	}
	for _, tc := range cases {
		c := craft(t, headerJSON(nil))
		tc.build(c)
		c.b = append(c.b, tail...)
		var err error
		alloc := allocated(func() { _, err = countRead(c.b) })
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", tc.name, err, tc.want, tc.msg)
		}
		if alloc > 4<<20 {
			t.Errorf("%s: %d bytes allocated", tc.name, alloc)
		}
	}

	// The header frame's length is bounded the same way.
	b := []byte("SLIPSNAP\x01H\xff\xff\xff\xff\x00\x00\x00\x00")
	b = append(b, le32(crc(b[9:]))...)
	var err error
	alloc := allocated(func() { _, err = NewReader(bytes.NewReader(append(b, tail...))) })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "length 4294967295") || alloc > 1<<20 {
		t.Errorf("a 4 GiB header: %v, %d bytes allocated", err, alloc)
	}
	b = []byte("SLIPSNAP\x01H\x00\x00\x10\x00\x00\x00\x00\x00") // 1 MiB claimed, 4 KiB there
	b = append(b, le32(crc(b[9:]))...)
	alloc = allocated(func() { _, err = NewReader(bytes.NewReader(append(b, tail...))) })
	if !errors.Is(err, ErrTruncated) || alloc > 2<<20 {
		t.Errorf("a 1 MiB header of 4 KiB: %v, %d bytes allocated", err, alloc)
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
