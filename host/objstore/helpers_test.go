package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

var testStreamCreated = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// server starts a NATS server and returns its URL.
func server(t *testing.T) string {
	t.Helper()
	return testenv.NATS(t).ClientURL()
}

// node connects to url as one node does and binds a Store on bucket.
func node(t *testing.T, url, bucket string, opts Options) (*Store, jetstream.JetStream) {
	t.Helper()
	_, js := testenv.JetStream(t, url)
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	s, err := New(context.Background(), js, bucket, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// export returns a write function for Publish that writes an artifact of n
// records (values of size bytes, drawn from seed) at cursor, and keeps a
// copy of the bytes it wrote in *out when out is not nil.
func export(cursor uint64, n, size int, seed uint64, out *[]byte) func(io.Writer) (artifact.Manifest, error) {
	return func(w io.Writer) (artifact.Manifest, error) {
		var buf bytes.Buffer
		if out != nil {
			w = io.MultiWriter(w, &buf)
		}
		aw, err := artifact.NewWriter(w, artifact.Manifest{
			Bucket: "orders", Stream: "KV_orders", StreamCreated: testStreamCreated,
			Cursor: cursor, Producer: "objstore-test",
		})
		if err != nil {
			return artifact.Manifest{}, err
		}
		r := rand.New(rand.NewPCG(seed, 1))
		for i := range n {
			v := make([]byte, size)
			for j := range v {
				v[j] = byte(r.Uint32())
			}
			if err := aw.Add(artifact.Record{Key: fmt.Appendf(nil, "k%06d", i), Value: v, Revision: uint64(i + 1)}); err != nil {
				return artifact.Manifest{}, err
			}
		}
		m, err := aw.Close()
		if out != nil {
			*out = buf.Bytes()
		}
		return m, err
	}
}

// objects lists the bucket's live objects, sorted.
func objects(t *testing.T, s *Store) []string {
	t.Helper()
	list, err := s.obs.List(context.Background())
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range list {
		names = append(names, o.Name)
	}
	slices.Sort(names)
	return names
}

// history returns the revisions of series name's pointer, oldest first.
func history(t *testing.T, s *Store, name string) []Pointer {
	t.Helper()
	entries, err := s.ptrs.History(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []Pointer
	for _, e := range entries {
		p, err := decodePointer(name, e.Value())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// readAll opens series name and returns its bytes, checking them as an
// artifact too.
func readAll(t *testing.T, s *Store, name string) ([]byte, Pointer) {
	t.Helper()
	rc, p, err := s.Open(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", p.Object, err)
	}
	r, err := artifact.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", p.Object, err)
		}
	}
	if m := r.Manifest(); m.Cursor != p.Cursor || m.ContentHash != p.ContentHash || m.Records != p.Records {
		t.Fatalf("%s holds cursor %d, %d records, %s; the pointer says cursor %d, %d records, %s",
			p.Object, m.Cursor, m.Records, m.ContentHash, p.Cursor, p.Records, p.ContentHash)
	}
	return b, p
}

// emptyDir fails unless dir holds nothing.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("%s holds %v", dir, left)
	}
}
