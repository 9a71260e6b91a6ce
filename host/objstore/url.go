package objstore

import (
	"errors"
	"fmt"
	"strings"
)

// Scheme is the URL scheme of an artifact series in a NATS Object Store.
const Scheme = "nats-object"

// Limits of the two parts of a Location.
const (
	maxBucketLen = 200 // leaves room for the derived bucket names' suffixes
	maxNameLen   = 128
)

// Location names an artifact series: the Object Store bucket that holds its
// payloads and the series' name in it.
type Location struct {
	Bucket string
	Name   string
}

// String returns the location as a nats-object:// URL.
func (l Location) String() string { return Scheme + "://" + l.Bucket + "/" + l.Name }

// ParseURL parses nats-object://BUCKET/NAME.
//
// BUCKET is an Object Store bucket name: letters, digits, '_' and '-'.
// NAME is one path segment of letters, digits, '_' and '-', with single dots
// allowed between them (like a NATS subject token sequence: "orders.eu"); it
// is used as a KV key and as the prefix "NAME/" of the payloads' object names.
// NAME may not contain '/': a series' prefix then never holds another
// series' payloads, so pruning one series cannot touch another's.
// Neither part is longer than 200 (BUCKET) or 128 (NAME) bytes. A URL with a
// user, port, query or fragment is refused.
func ParseURL(s string) (Location, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Location{}, fmt.Errorf("objstore: %q is not a URL: want %s://BUCKET/NAME", s, Scheme)
	}
	if !strings.EqualFold(scheme, Scheme) {
		return Location{}, fmt.Errorf("objstore: %q: scheme %q, want %s://BUCKET/NAME", s, scheme, Scheme)
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return Location{}, fmt.Errorf("objstore: %q: a query or fragment is not allowed", s)
	}
	bucket, name, ok := strings.Cut(rest, "/")
	if !ok || name == "" {
		return Location{}, fmt.Errorf("objstore: %q: no series name: want %s://BUCKET/NAME", s, Scheme)
	}
	if strings.ContainsAny(bucket, "@:") {
		return Location{}, fmt.Errorf("objstore: %q: a user or port is not allowed: BUCKET is a bucket name, not a server", s)
	}
	if err := checkBucket(bucket); err != nil {
		return Location{}, fmt.Errorf("objstore: %q: %v", s, err)
	}
	if strings.Contains(name, "/") {
		return Location{}, fmt.Errorf("objstore: %q: the series name %q has a '/': NAME is one segment", s, name)
	}
	if err := checkName(name); err != nil {
		return Location{}, fmt.Errorf("objstore: %q: %v", s, err)
	}
	return Location{Bucket: bucket, Name: name}, nil
}

// checkBucket refuses a bucket name NATS would refuse, or one too long to
// derive the pointer and lease bucket names from.
func checkBucket(b string) error {
	switch {
	case b == "":
		return errors.New("no bucket name")
	case len(b) > maxBucketLen:
		return fmt.Errorf("bucket name of %d bytes, at most %d", len(b), maxBucketLen)
	}
	for i := 0; i < len(b); i++ {
		if !wordByte(b[i]) {
			return fmt.Errorf("bucket name %q: %q is not allowed (letters, digits, '_' and '-' only)", b, b[i])
		}
	}
	return nil
}

// checkName refuses a series name that is not NATS-safe as a KV key and an
// object name prefix; see ParseURL.
func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("no series name")
	case len(n) > maxNameLen:
		return fmt.Errorf("series name of %d bytes, at most %d", len(n), maxNameLen)
	case n[0] == '.' || n[len(n)-1] == '.' || strings.Contains(n, ".."):
		return fmt.Errorf("series name %q: dots only between other characters, one at a time", n)
	}
	for i := 0; i < len(n); i++ {
		if !wordByte(n[i]) && n[i] != '.' {
			return fmt.Errorf("series name %q: %q is not allowed (letters, digits, '_', '-' and inner dots only)", n, n[i])
		}
	}
	return nil
}

func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
