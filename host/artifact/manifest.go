package artifact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// FormatVersion is the version of the format this package writes, and the
// only one it reads.
const FormatVersion = 1

// Limits of a record. MaxKeySize is well above what a NATS subject can carry
// on a default server (its whole protocol line is 4 KiB); MaxValueSize is the
// largest payload a NATS server accepts (max_payload cannot exceed the 64 MiB
// max_pending).
const (
	MaxKeySize   = 64 << 10
	MaxValueSize = 64 << 20
)

// Sentinel errors. Errors returned by this package wrap one of them, or an
// error of the underlying io.Reader or io.Writer, or describe a refused
// argument.
var (
	// ErrCorrupt is wrapped by every error about a damaged artifact:
	// a checksum, length, count or hash that does not match, a frame out of
	// place, records out of order, bytes after the end.
	ErrCorrupt = errors.New("artifact: corrupt")
	// ErrTruncated is wrapped by the errors about an artifact that ends
	// before its end frame. It wraps ErrCorrupt.
	ErrTruncated = fmt.Errorf("%w: truncated", ErrCorrupt)
	// ErrNotArtifact is returned by NewReader for input that does not start
	// with the artifact magic.
	ErrNotArtifact = errors.New("artifact: not a slipstream artifact")
	// ErrUnsupportedVersion is returned by NewReader for an artifact of a
	// format version this package does not know.
	ErrUnsupportedVersion = errors.New("artifact: unsupported format version")
)

// Manifest describes an artifact. The fields up to Producer form the header,
// which a Writer writes first and a Reader reports right after NewReader; the
// last three form the trailer, which a Writer computes and a Reader reports
// only after Next returned io.EOF (they are zero until then).
type Manifest struct {
	// FormatVersion is the artifact's format version. A Writer takes 0 as
	// FormatVersion and refuses any other value.
	FormatVersion int `json:"format_version"`
	// Bucket is the KV bucket the fold materializes. Required.
	Bucket string `json:"bucket"`
	// Stream is the JetStream stream behind the bucket. Required.
	Stream string `json:"stream"`
	// StreamCreated is the stream's creation time, which tells a stream from
	// another of the same name. Stored in UTC to the nanosecond.
	StreamCreated time.Time `json:"stream_created"`
	// Filters are the fold's scope filters. An empty list reads back as nil.
	Filters []string `json:"filters"`
	// TransformDigest identifies the fold's transform chain.
	TransformDigest string `json:"transform_digest"`
	// Cursor is the stream sequence the records are complete up to.
	Cursor uint64 `json:"cursor"`
	// Created is when the artifact was written; a Writer given the zero
	// time uses the current time.
	Created time.Time `json:"created"`
	// Producer is the version of the program that wrote the artifact.
	Producer string `json:"producer"`
	// SyncedAt is when the exported fold was last caught up with the
	// stream, at or before Cursor; zero when it never was, or is unknown.
	// An importer reconciles a fold whose SyncedAt is older than the
	// bucket's tombstone horizon, as it would after such an absence.
	SyncedAt time.Time `json:"synced_at"`

	// Records is the number of records.
	Records uint64 `json:"records"`
	// Bytes is the sum of the records' key and value lengths.
	Bytes uint64 `json:"bytes"`
	// ContentHash is the SHA-256, in lowercase hex, of the records'
	// canonical encoding (see the package documentation).
	ContentHash string `json:"content_hash"`
}

// Record is one key of a fold.
type Record struct {
	Key      []byte // not empty, at most MaxKeySize bytes
	Value    []byte // possibly empty, at most MaxValueSize bytes
	Revision uint64 // the stream sequence that produced the value
}

// The fixed parts of the format; see doc.go.
const (
	magic = "SLIPSNAP"

	tagHeader  = 'H'
	tagChunk   = 'C'
	tagTrailer = 'T'
	tagEnd     = 'E'

	jsonFrameSize  = 13 // tag, len, pcrc, fcrc
	chunkFrameSize = 25 // tag, clen, rlen, count, ccrc, rcrc, fcrc
	endFrameSize   = 13 // tag, size, fcrc
	recordHeadSize = 16 // klen, vlen, revision

	chunkTarget       = 1 << 20
	maxRecordSize     = recordHeadSize + MaxKeySize + MaxValueSize
	maxChunkRaw       = maxRecordSize
	maxChunkComp      = maxChunkRaw + 1<<20
	maxHeaderSize     = 1 << 20
	maxTrailerSize    = 4 << 10
	maxHeaderStrings  = 128 << 10
	maxFilters        = 4096
	contentHashDigits = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// checkHeader enforces what both sides require of a manifest's header
// fields, after normalize.
func checkHeader(m *Manifest) error {
	if m.FormatVersion != FormatVersion {
		return fmt.Errorf("format version %d, want %d", m.FormatVersion, FormatVersion)
	}
	if m.Bucket == "" {
		return errors.New("no bucket")
	}
	if m.Stream == "" {
		return errors.New("no stream")
	}
	if len(m.Filters) > maxFilters {
		return fmt.Errorf("%d filters, at most %d", len(m.Filters), maxFilters)
	}
	strs := append([]string{m.Bucket, m.Stream, m.TransformDigest, m.Producer}, m.Filters...)
	total := 0
	for _, s := range strs {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%q is not valid UTF-8", s)
		}
		total += len(s)
	}
	if total > maxHeaderStrings {
		return fmt.Errorf("the header's strings total %d bytes, at most %d", total, maxHeaderStrings)
	}
	for _, t := range []time.Time{m.StreamCreated, m.Created, m.SyncedAt} {
		if y := t.Year(); y < 0 || y > 9999 {
			return fmt.Errorf("time %v is outside the years 0000 to 9999", t)
		}
	}
	return nil
}

// header returns m's header fields in the form a Reader reports them:
// times in UTC, an empty filter list nil, the trailer zero.
func (m Manifest) header() Manifest {
	h := Manifest{
		FormatVersion:   m.FormatVersion,
		Bucket:          m.Bucket,
		Stream:          m.Stream,
		StreamCreated:   m.StreamCreated.UTC(),
		TransformDigest: m.TransformDigest,
		Cursor:          m.Cursor,
		Created:         m.Created.UTC(),
		Producer:        m.Producer,
		SyncedAt:        m.SyncedAt.UTC(),
	}
	if m.SyncedAt.IsZero() {
		h.SyncedAt = time.Time{}
	}
	if len(m.Filters) > 0 {
		h.Filters = append([]string(nil), m.Filters...)
	}
	return h
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, error) {
	if !strings.HasSuffix(s, "Z") {
		return time.Time{}, fmt.Errorf("time %q is not in UTC (no Z suffix)", s)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q is not RFC 3339", s)
	}
	return t.UTC(), nil
}

// encodeHeader returns the header frame's JSON for m, which checkHeader
// accepted.
func encodeHeader(m *Manifest) ([]byte, error) {
	filters := m.Filters
	if filters == nil {
		filters = []string{}
	}
	syncedAt := ""
	if !m.SyncedAt.IsZero() {
		syncedAt = formatTime(m.SyncedAt)
	}
	return encodeJSON(struct {
		FormatVersion   int      `json:"format_version"`
		Bucket          string   `json:"bucket"`
		Stream          string   `json:"stream"`
		StreamCreated   string   `json:"stream_created"`
		Filters         []string `json:"filters"`
		TransformDigest string   `json:"transform_digest"`
		Cursor          uint64   `json:"cursor"`
		Created         string   `json:"created"`
		Producer        string   `json:"producer"`
		SyncedAt        string   `json:"synced_at"`
	}{m.FormatVersion, m.Bucket, m.Stream, formatTime(m.StreamCreated), filters,
		m.TransformDigest, m.Cursor, formatTime(m.Created), m.Producer, syncedAt})
}

func encodeTrailer(m *Manifest) ([]byte, error) {
	return encodeJSON(struct {
		Records     uint64 `json:"records"`
		Bytes       uint64 `json:"bytes"`
		ContentHash string `json:"content_hash"`
	}{m.Records, m.Bytes, m.ContentHash})
}

func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// decodeHeader parses a header frame's JSON.
func decodeHeader(p []byte) (Manifest, error) {
	var m Manifest
	var created, streamCreated, syncedAt string
	var filters []json.RawMessage
	err := decodeObject(p, map[string]any{
		"format_version":   &m.FormatVersion,
		"bucket":           &m.Bucket,
		"stream":           &m.Stream,
		"stream_created":   &streamCreated,
		"filters":          &filters,
		"transform_digest": &m.TransformDigest,
		"cursor":           &m.Cursor,
		"created":          &created,
		"producer":         &m.Producer,
		"synced_at":        &syncedAt,
	})
	if err != nil {
		return Manifest{}, err
	}
	if m.StreamCreated, err = parseTime(streamCreated); err != nil {
		return Manifest{}, fmt.Errorf("stream_created: %w", err)
	}
	if m.Created, err = parseTime(created); err != nil {
		return Manifest{}, fmt.Errorf("created: %w", err)
	}
	if syncedAt != "" {
		if m.SyncedAt, err = parseTime(syncedAt); err != nil {
			return Manifest{}, fmt.Errorf("synced_at: %w", err)
		}
	}
	if len(filters) > maxFilters {
		return Manifest{}, fmt.Errorf("%d filters, at most %d", len(filters), maxFilters)
	}
	for i, raw := range filters {
		var f string
		if string(raw) == "null" {
			return Manifest{}, fmt.Errorf("filter %d is null", i+1)
		}
		if err := json.Unmarshal(raw, &f); err != nil {
			return Manifest{}, fmt.Errorf("filter %d: %v", i+1, err)
		}
		m.Filters = append(m.Filters, f)
	}
	if err := checkHeader(&m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

type trailer struct {
	records, bytes uint64
	contentHash    string
}

func decodeTrailer(p []byte) (trailer, error) {
	var t trailer
	err := decodeObject(p, map[string]any{
		"records":      &t.records,
		"bytes":        &t.bytes,
		"content_hash": &t.contentHash,
	})
	return t, err
}

// decodeObject parses p as one JSON object whose members are exactly the
// keys of fields, each present once and not null, and unmarshals each
// member into the pointer it maps to.
func decodeObject(p []byte, fields map[string]any) error {
	if !utf8.Valid(p) {
		return errors.New("the JSON is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("the JSON is not an object")
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("bad JSON: %v", err)
		}
		name, _ := tok.(string)
		dst, known := fields[name]
		if !known {
			return fmt.Errorf("unknown member %q", name)
		}
		if seen[name] {
			return fmt.Errorf("member %q repeats", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("bad JSON: %v", err)
		}
		if string(raw) == "null" {
			return fmt.Errorf("member %q is null", name)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("member %q: %v", name, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("bytes follow the JSON object")
	}
	for name := range fields {
		if !seen[name] {
			return fmt.Errorf("member %q is missing", name)
		}
	}
	return nil
}
