package artifact

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
)

// testManifest is a header with every field set, its times outside UTC to
// show they are stored in UTC.
func testManifest() Manifest {
	tz := time.FixedZone("test", 5*3600+30*60)
	return Manifest{
		Bucket:          "orders",
		Stream:          "KV_orders",
		StreamCreated:   time.Date(2025, 3, 14, 15, 9, 26, 535897932, tz),
		Filters:         []string{"eu.>", "us.*.open"},
		TransformDigest: "sha256:9f2c",
		Cursor:          987654321,
		Created:         time.Date(2026, 1, 2, 3, 4, 5, 6, tz),
		Producer:        "slipstream test",
		SyncedAt:        time.Date(2026, 1, 2, 3, 4, 0, 0, tz),
	}
}

// genRecords returns n records in key order, about one in seven with an
// empty value, the others of up to 300 loosely compressible bytes.
func genRecords(n int, seed uint64) []Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := []string{"alpha", "beta", "gamma", "delta", "{", "}", ":", "\"id\"", "42", "\x00", "\xff"}
	recs := make([]Record, n)
	for i := range recs {
		var v []byte
		if i%7 != 0 {
			for n := rng.IntN(300); len(v) < n; {
				v = append(v, words[rng.IntN(len(words))]...)
			}
			if v == nil {
				v = []byte{}
			}
		}
		recs[i] = Record{Key: fmt.Appendf(nil, "k/%08d", i), Value: v, Revision: rng.Uint64N(1 << 40)}
	}
	return recs
}

func randBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func write(t testing.TB, m Manifest, recs []Record) ([]byte, Manifest) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, m)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for _, r := range recs {
		if err := w.Add(r); err != nil {
			t.Fatalf("Add(%q): %v", r.Key, err)
		}
	}
	done, err := w.Close()
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes(), done
}

// readAll reads an artifact to its end and returns copies of its records.
// A failure is returned with the records read before it.
func readAll(src io.Reader) ([]Record, Manifest, error) {
	r, err := NewReader(src)
	if err != nil {
		return nil, Manifest{}, err
	}
	var recs []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return recs, r.Manifest(), nil
		}
		if err != nil {
			return recs, r.Manifest(), err
		}
		recs = append(recs, Record{Key: bytes.Clone(rec.Key), Value: bytes.Clone(rec.Value), Revision: rec.Revision})
	}
}

func sameRecords(t testing.TB, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || g.Revision != w.Revision {
			t.Fatalf("record %d: got key %q (%d bytes of value, rev %d), want key %q (%d bytes, rev %d)",
				i, showKey(g.Key), len(g.Value), g.Revision, showKey(w.Key), len(w.Value), w.Revision)
		}
	}
}

// The test's own encoding of the spec, independent of the package's code.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func crc(p []byte) uint32 { return crc32.Checksum(p, crcTable) }

func specRecords(recs []Record) []byte {
	var b []byte
	for _, r := range recs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Key)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Value)))
		b = binary.LittleEndian.AppendUint64(b, r.Revision)
		b = append(b, r.Key...)
		b = append(b, r.Value...)
	}
	return b
}

func specHash(recs []Record) string {
	s := sha256.Sum256(specRecords(recs))
	return hex.EncodeToString(s[:])
}

// frame is one frame of an artifact as the spec lays it out.
type frame struct {
	tag            byte
	off, body, end int // frame start, payload start, frame end
	count          uint32
}

// walk splits an artifact into frames following doc.go alone, and checks
// every CRC and length field it defines.
func walk(t testing.TB, data []byte) []frame {
	t.Helper()
	if string(data[:9]) != "SLIPSNAP\x01" {
		t.Fatalf("magic %q", data[:9])
	}
	var frames []frame
	for off := 9; off < len(data); {
		f := frame{tag: data[off], off: off}
		le := binary.LittleEndian
		switch f.tag {
		case 'H', 'T':
			f.body = off + 13
			f.end = f.body + int(le.Uint32(data[off+1:]))
			if crc(data[off:off+9]) != le.Uint32(data[off+9:]) || crc(data[f.body:f.end]) != le.Uint32(data[off+5:]) {
				t.Fatalf("%c frame at %d: bad CRC", f.tag, off)
			}
		case 'C':
			f.body = off + 25
			f.end = f.body + int(le.Uint32(data[off+1:]))
			f.count = le.Uint32(data[off+9:])
			if crc(data[off:off+21]) != le.Uint32(data[off+21:]) || crc(data[f.body:f.end]) != le.Uint32(data[off+13:]) {
				t.Fatalf("chunk at %d: bad CRC", off)
			}
		case 'E':
			f.body, f.end = off+13, off+13
			if crc(data[off:off+9]) != le.Uint32(data[off+9:]) || le.Uint64(data[off+1:]) != uint64(off) {
				t.Fatalf("end frame at %d: bad CRC or size", off)
			}
		default:
			t.Fatalf("unknown tag %q at %d", f.tag, off)
		}
		frames = append(frames, f)
		off = f.end
	}
	return frames
}

func TestRoundTrip(t *testing.T) {
	recs := genRecords(30000, 1)
	// A key of the largest size and a multi-MiB incompressible value,
	// in key order after the generated ones.
	big := randBytes(3<<20+7, 2)
	recs = append(recs,
		Record{Key: append([]byte("m/"), bytes.Repeat([]byte{'x'}, MaxKeySize-2)...), Value: []byte("v"), Revision: 1},
		Record{Key: []byte("n/big"), Value: big, Revision: 2},
		Record{Key: []byte("n/empty"), Value: nil, Revision: 3},
		Record{Key: []byte{0xff, 0xff}, Value: []byte{0}, Revision: 1<<64 - 1},
	)
	in := testManifest()
	data, done := write(t, in, recs)

	var bytesWant uint64
	for _, r := range recs {
		bytesWant += uint64(len(r.Key) + len(r.Value))
	}
	want := in
	want.FormatVersion = FormatVersion
	want.StreamCreated = in.StreamCreated.UTC()
	want.Created = in.Created.UTC()
	want.SyncedAt = in.SyncedAt.UTC()
	want.Records, want.Bytes, want.ContentHash = uint64(len(recs)), bytesWant, specHash(recs)
	if !reflect.DeepEqual(done, want) {
		t.Fatalf("Close returned\n%+v\nwant\n%+v", done, want)
	}

	frames := walk(t, data)
	chunks, inChunks := 0, uint32(0)
	for _, f := range frames {
		if f.tag == 'C' {
			chunks++
			inChunks += f.count
		}
	}
	if chunks < 4 || int(inChunks) != len(recs) {
		t.Fatalf("%d chunks holding %d records; want several holding %d", chunks, inChunks, len(recs))
	}

	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	head := r.Manifest()
	wantHead := want
	wantHead.Records, wantHead.Bytes, wantHead.ContentHash = 0, 0, ""
	if !reflect.DeepEqual(head, wantHead) {
		t.Fatalf("header manifest\n%+v\nwant\n%+v", head, wantHead)
	}
	got, m, err := readAll(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, recs)
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("manifest after EOF\n%+v\nwant\n%+v", m, want)
	}
}

func TestZeroRecords(t *testing.T) {
	data, done := write(t, Manifest{Bucket: "b", Stream: "KV_b"}, nil)
	if done.Records != 0 || done.Bytes != 0 || done.ContentHash != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("empty artifact's trailer: %+v", done)
	}
	if done.Created.IsZero() || time.Since(done.Created) > time.Minute || done.Filters != nil {
		t.Fatalf("Created %v, Filters %#v: want now and nil", done.Created, done.Filters)
	}
	for _, f := range walk(t, data) {
		if f.tag == 'C' {
			t.Fatal("an empty artifact has a chunk")
		}
	}
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("Next: %v, want io.EOF every time", err)
		}
	}
	if m := r.Manifest(); !reflect.DeepEqual(m, done) {
		t.Fatalf("manifest %+v, want %+v", m, done)
	}
}

// TestLimits writes a record of the largest key and value, incompressible,
// so a chunk of the largest size with zstd's worst overhead is within what
// the reader accepts.
func TestLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 64 MiB value")
	}
	key := bytes.Repeat([]byte{'k'}, MaxKeySize)
	value := randBytes(MaxValueSize, 3)
	recs := []Record{{Key: []byte("a"), Value: []byte("small"), Revision: 1}, {Key: key, Value: value, Revision: 2}}
	data, _ := write(t, testManifest(), recs)
	got, _, err := readAll(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, recs)
}

func TestWriterRefusesRecords(t *testing.T) {
	cases := []struct {
		name string
		recs []Record
		msg  string
	}{
		{"out of order", []Record{{Key: []byte("b")}, {Key: []byte("a")}}, "comes before"},
		{"duplicate", []Record{{Key: []byte("a")}, {Key: []byte("b")}, {Key: []byte("b")}}, "repeats"},
		{"prefix after longer", []Record{{Key: []byte("ab")}, {Key: []byte("a")}}, "comes before"},
		{"empty key", []Record{{Key: []byte("a")}, {Key: []byte{}}}, "empty key"},
		{"first key empty", []Record{{Key: nil, Value: []byte("v")}}, "empty key"},
		{"key too long", []Record{{Key: make([]byte, MaxKeySize+1)}}, "key of"},
		{"value too long", []Record{{Key: []byte("a"), Value: make([]byte, MaxValueSize+1)}}, "value of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, testManifest())
			if err != nil {
				t.Fatal(err)
			}
			var refused error
			for i, r := range c.recs {
				err := w.Add(r)
				if i < len(c.recs)-1 && err != nil {
					t.Fatalf("record %d refused: %v", i, err)
				}
				refused = err
			}
			if refused == nil || !strings.Contains(refused.Error(), c.msg) {
				t.Fatalf("last Add: %v, want an error saying %q", refused, c.msg)
			}
			if err := w.Add(Record{Key: []byte("zzz")}); err != refused {
				t.Fatalf("Add after a refusal: %v, want the same error", err)
			}
			if _, err := w.Close(); err != refused {
				t.Fatalf("Close after a refusal: %v, want the same error", err)
			}
			// What was written must not pass for a complete artifact.
			if _, _, err := readAll(&buf); !errors.Is(err, ErrTruncated) {
				t.Fatalf("reading the output: %v, want ErrTruncated", err)
			}
		})
	}
}

func TestWriterRefusesManifests(t *testing.T) {
	edit := func(f func(*Manifest)) Manifest {
		m := testManifest()
		f(&m)
		return m
	}
	cases := map[string]Manifest{
		"no bucket":      edit(func(m *Manifest) { m.Bucket = "" }),
		"no stream":      edit(func(m *Manifest) { m.Stream = "" }),
		"future version": edit(func(m *Manifest) { m.FormatVersion = 2 }),
		"bad UTF-8":      edit(func(m *Manifest) { m.Producer = "v\xff" }),
		"bad UTF-8 filter": edit(func(m *Manifest) {
			m.Filters = []string{"ok", "\xc3"}
		}),
		"year 10000":      edit(func(m *Manifest) { m.StreamCreated = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"negative year":   edit(func(m *Manifest) { m.Created = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"synced year":     edit(func(m *Manifest) { m.SyncedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"too many filter": edit(func(m *Manifest) { m.Filters = make([]string, maxFilters+1) }),
		"long strings":    edit(func(m *Manifest) { m.TransformDigest = strings.Repeat("d", maxHeaderStrings) }),
	}
	for name, m := range cases {
		var buf bytes.Buffer
		if _, err := NewWriter(&buf, m); err == nil {
			t.Errorf("%s: NewWriter accepted it", name)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: %d bytes written for a refused manifest", name, buf.Len())
		}
	}
	// At the limits it is accepted, and reads back the same.
	m := testManifest()
	m.Filters = make([]string, maxFilters)
	m.Filters[0] = "\u2028<&>\x01"
	m.TransformDigest = strings.Repeat("\x01", maxHeaderStrings-len(m.Bucket)-len(m.Stream)-len(m.Producer)-len(m.Filters[0]))
	m.StreamCreated = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	m.Created = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	data, done := write(t, m, nil)
	_, got, err := readAll(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, done) {
		t.Fatal("the manifest at the limits did not read back the same")
	}
}

func TestAddCopiesRecord(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testManifest())
	if err != nil {
		t.Fatal(err)
	}
	key, value := []byte("k1"), []byte("v1")
	if err := w.Add(Record{Key: key, Value: value, Revision: 1}); err != nil {
		t.Fatal(err)
	}
	copy(key, "k9") // k2 would not sort after it, were the writer keeping it
	copy(value, "XX")
	if err := w.Add(Record{Key: []byte("k2"), Value: []byte("v2"), Revision: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := readAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, []Record{{Key: []byte("k1"), Value: []byte("v1"), Revision: 1}, {Key: []byte("k2"), Value: []byte("v2"), Revision: 2}})
}

// TestRecordSlicesAreCapped: appending to a returned key cannot overwrite
// its value, nor a value the next record.
func TestRecordSlicesAreCapped(t *testing.T) {
	recs := []Record{{Key: []byte("a"), Value: []byte("1"), Revision: 1}, {Key: []byte("b"), Value: []byte("2"), Revision: 2}}
	data, _ := write(t, testManifest(), recs)
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	_ = append(rec.Key, 'X')
	_ = append(rec.Value, 'Y')
	if string(rec.Value) != "1" {
		t.Fatalf("value %q after appending to the key", rec.Value)
	}
	rec, err = r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if string(rec.Key) != "b" || string(rec.Value) != "2" {
		t.Fatalf("next record %q=%q after appending to the previous one", rec.Key, rec.Value)
	}
}

func TestWriterClosed(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testManifest())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n := buf.Len()
	if err := w.Add(Record{Key: []byte("a")}); err == nil {
		t.Fatal("Add after Close succeeded")
	}
	if _, err := w.Close(); err == nil {
		t.Fatal("a second Close succeeded")
	}
	if buf.Len() != n {
		t.Fatal("calls after Close wrote bytes")
	}
}

// failWriter accepts limit bytes, then fails; short makes it report a short
// write without an error instead.
type failWriter struct {
	limit int
	short bool
	n     int
}

var errBoom = errors.New("boom")

func (f *failWriter) Write(p []byte) (int, error) {
	room := f.limit - f.n
	if len(p) <= room {
		f.n += len(p)
		return len(p), nil
	}
	f.n += room
	if f.short {
		return room, nil
	}
	return room, errBoom
}

func TestWriterIOErrors(t *testing.T) {
	recs := genRecords(8000, 4)
	data, _ := write(t, testManifest(), recs)
	if chunks := len(walk(t, data)) - 3; chunks < 2 {
		t.Fatalf("%d chunks, want several", chunks)
	}
	for _, short := range []bool{false, true} {
		for _, limit := range []int{0, 5, 100, len(data) / 2, len(data) - 20, len(data) - 1} {
			fw := &failWriter{limit: limit, short: short}
			w, err := NewWriter(fw, testManifest())
			for _, r := range recs {
				if err != nil {
					break
				}
				err = w.Add(r)
			}
			if err == nil {
				_, err = w.Close()
			}
			want := errBoom
			if short {
				want = io.ErrShortWrite
			}
			if !errors.Is(err, want) {
				t.Fatalf("limit %d, short %v: %v, want %v", limit, short, err, want)
			}
			if w != nil {
				if err2 := w.Add(Record{Key: []byte("zzzz")}); !errors.Is(err2, want) {
					t.Fatalf("Add after a write error: %v", err2)
				}
			}
		}
	}
}

func TestReaderSourceShapes(t *testing.T) {
	recs := genRecords(12000, 5)
	data, _ := write(t, testManifest(), recs)
	for name, src := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(data)),
		"half":     iotest.HalfReader(bytes.NewReader(data)),
		"data+err": iotest.DataErrReader(bytes.NewReader(data)),
		"plain":    bytes.NewReader(data),
		"half+err": iotest.HalfReader(iotest.DataErrReader(bytes.NewReader(data))),
	} {
		got, _, err := readAll(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameRecords(t, got, recs)
	}
}

// TestReaderSourceError: an error of the source is passed on, and is not
// taken for a damaged artifact.
func TestReaderSourceError(t *testing.T) {
	data, _ := write(t, testManifest(), genRecords(12000, 6))
	for _, n := range []int{0, 4, 9, 30, len(data) / 2, len(data) - 13, len(data)} {
		src := io.MultiReader(bytes.NewReader(data[:n]), iotest.ErrReader(errBoom))
		_, _, err := readAll(src)
		if !errors.Is(err, errBoom) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("source failing after %d bytes: %v, want errBoom and not ErrCorrupt", n, err)
		}
	}
}

// TestReaderStopsAtEnd: the reader consumes the artifact and one byte more
// to look for trailing garbage, never more.
func TestReaderStopsAtEnd(t *testing.T) {
	data, _ := write(t, testManifest(), genRecords(100, 7))
	src := bytes.NewReader(data)
	if _, _, err := readAll(src); err != nil {
		t.Fatal(err)
	}
	if src.Len() != 0 {
		t.Fatalf("%d bytes left unread", src.Len())
	}
}

// TestNoPerRecordAllocation: Next allocates per chunk, not per record.
func TestNoPerRecordAllocation(t *testing.T) {
	recs := genRecords(50000, 8)
	data, _ := write(t, testManifest(), recs)
	allocs := testing.AllocsPerRun(1, func() {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	})
	if perRecord := allocs / float64(len(recs)); perRecord > 0.01 {
		t.Fatalf("%.0f allocations to read %d records (%.3f each)", allocs, len(recs), perRecord)
	}
}

// TestHandCrafted reads an artifact built from doc.go by the test's own
// encoder, cut into chunks of its own choosing.
func TestHandCrafted(t *testing.T) {
	recs := genRecords(50, 9)
	c := craft(t, headerJSON(nil))
	c.chunk(specRecords(recs[:1]), 1)
	c.chunk(specRecords(recs[1:30]), 29)
	c.chunk(specRecords(recs[30:]), 20)
	c.trailer(recs)
	c.end()
	got, m, err := readAll(bytes.NewReader(c.b))
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, recs)
	if m.Bucket != "orders" || m.Cursor != 7 || m.Records != 50 || m.ContentHash != specHash(recs) ||
		!m.StreamCreated.Equal(time.Date(2025, 1, 2, 3, 4, 5, 600000000, time.UTC)) || !reflect.DeepEqual(m.Filters, []string{"a.>"}) {
		t.Fatalf("manifest %+v", m)
	}
}

// crafted builds artifacts by hand, per doc.go, to say what the writer
// never would.
type crafted struct {
	t testing.TB
	b []byte
}

func headerJSON(edit map[string]string) []byte {
	members := [][2]string{
		{"format_version", `1`},
		{"bucket", `"orders"`},
		{"stream", `"KV_orders"`},
		{"stream_created", `"2025-01-02T03:04:05.6Z"`},
		{"filters", `["a.>"]`},
		{"transform_digest", `""`},
		{"cursor", `7`},
		{"created", `"2026-01-01T00:00:00Z"`},
		{"producer", `"hand"`},
		{"synced_at", `""`},
	}
	var b strings.Builder
	b.WriteString("{")
	for _, kv := range members {
		v, edited := edit[kv[0]]
		if !edited {
			v = kv[1]
		}
		if v == "" { // drop the member
			continue
		}
		if b.Len() > 1 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q:%s", kv[0], v)
	}
	b.WriteString(edit["+"]) // extra text before the closing brace
	b.WriteString("}")
	return []byte(b.String())
}

func craft(t testing.TB, header []byte) *crafted {
	c := &crafted{t: t, b: []byte("SLIPSNAP\x01")}
	c.json('H', header)
	return c
}

func (c *crafted) json(tag byte, payload []byte) {
	start := len(c.b)
	c.b = append(c.b, tag)
	c.b = binary.LittleEndian.AppendUint32(c.b, uint32(len(payload)))
	c.b = binary.LittleEndian.AppendUint32(c.b, crc(payload))
	c.b = binary.LittleEndian.AppendUint32(c.b, crc(c.b[start:]))
	c.b = append(c.b, payload...)
}

// chunkHead appends a chunk frame header with a correct frame CRC.
func (c *crafted) chunkHead(clen, rlen, count, ccrc, rcrc uint32) {
	start := len(c.b)
	c.b = append(c.b, 'C')
	for _, v := range []uint32{clen, rlen, count, ccrc, rcrc} {
		c.b = binary.LittleEndian.AppendUint32(c.b, v)
	}
	c.b = binary.LittleEndian.AppendUint32(c.b, crc(c.b[start:]))
}

func (c *crafted) chunk(raw []byte, count uint32) {
	c.chunkRaw(raw, uint32(len(raw)), count)
}

// chunkRaw appends a chunk of raw, compressed, claiming rlen and count.
func (c *crafted) chunkRaw(raw []byte, rlen, count uint32) {
	comp := zstdEncode(c.t, raw)
	c.chunkHead(uint32(len(comp)), rlen, count, crc(comp), crc(raw))
	c.b = append(c.b, comp...)
}

func zstdEncode(t testing.TB, raw []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(raw, nil)
}

func (c *crafted) trailer(recs []Record) {
	var n uint64
	for _, r := range recs {
		n += uint64(len(r.Key) + len(r.Value))
	}
	c.trailerOf(uint64(len(recs)), n, specHash(recs))
}

func (c *crafted) trailerOf(records, bytes uint64, hash string) {
	c.json('T', fmt.Appendf(nil, `{"records":%d,"bytes":%d,"content_hash":%q}`, records, bytes, hash))
}

func (c *crafted) end() { c.endAt(uint64(len(c.b))) }

func (c *crafted) endAt(size uint64) {
	start := len(c.b)
	c.b = append(c.b, 'E')
	c.b = binary.LittleEndian.AppendUint64(c.b, size)
	c.b = binary.LittleEndian.AppendUint32(c.b, crc(c.b[start:]))
}
