package objstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/artifact"
)

// maxCASAttempts bounds how often Publish re-reads the pointer after losing
// a compare-and-swap to another exporter.
const maxCASAttempts = 32

// cleanupTimeout bounds the removal of a payload after a failed publish,
// which runs even when the publish's context is done.
const cleanupTimeout = 10 * time.Second

// staged is an artifact written to a temp file and uploaded, not yet named
// by the pointer.
type staged struct {
	name     string
	file     *os.File
	next     Pointer   // the pointer to publish, without Previous
	started  time.Time // when the upload started (monotonic)
	uploaded bool      // this publish put the object (it did not exist)
}

func (st *staged) close() {
	st.file.Close()
	os.Remove(st.file.Name())
}

// Publish makes the artifact write writes the current one of series name.
// write writes one artifact (artifact.NewWriter, Add, Close) to the writer
// it is given and returns the manifest Close returned. Publish writes it to
// a temp file, reads it back to verify it, uploads it as
// NAME/DIGEST.slipsnap (DIGEST: the SHA-256 of the file) and moves the
// pointer to it by compare-and-swap, re-reading the pointer after a lost
// swap. It returns the pointer it published.
//
// The pointer never moves back (decidePointer): an export the pointer has
// already passed gets an error wrapping ErrSuperseded (a *SupersededError
// with both cursors) and its payload is removed; one at the pointer's
// cursor and content hash changes nothing and returns the pointer as it
// is. An upload the pointer could not be moved to within
// Options.PublishWindow of its start gets ErrPublishWindow, and is removed.
// An error of the swap itself may leave the payload in the bucket, unnamed,
// for Prune. The Pointer returned has no Published time.
func (s *Store) Publish(ctx context.Context, name string, write func(io.Writer) (artifact.Manifest, error)) (Pointer, error) {
	st, err := s.stage(ctx, name, write)
	if err != nil {
		return Pointer{}, err
	}
	defer st.close()
	return s.commit(ctx, st)
}

// stage writes, verifies and uploads an artifact: the steps of Publish
// before the pointer. A crash after it leaves an orphan payload.
func (s *Store) stage(ctx context.Context, name string, write func(io.Writer) (artifact.Manifest, error)) (*staged, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("objstore: %v", err)
	}
	f, err := os.CreateTemp(s.opts.TempDir, "slipstream-export-*"+objectSuffix)
	if err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	st := &staged{name: name, file: f}
	ok := false
	defer func() {
		if !ok {
			st.close()
		}
	}()

	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	claimed, err := write(bw)
	if err != nil {
		return nil, fmt.Errorf("objstore: writing the artifact of %s: %w", name, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("objstore: writing the artifact of %s: %w", name, err)
	}
	m, size, err := verify(f)
	if err != nil {
		return nil, fmt.Errorf("objstore: the artifact written for %s: %w", name, err)
	}
	if claimed.ContentHash != m.ContentHash || claimed.Cursor != m.Cursor || claimed.Records != m.Records {
		return nil, fmt.Errorf("objstore: the artifact written for %s is cursor %d, %d records, content %s; write reported cursor %d, %d records, content %s",
			name, m.Cursor, m.Records, m.ContentHash, claimed.Cursor, claimed.Records, claimed.ContentHash)
	}
	digest := sum.Sum(nil)
	object := objectName(name, hex.EncodeToString(digest))
	st.next = Pointer{
		Object: object, ContentHash: m.ContentHash, Cursor: m.Cursor, Records: m.Records, Bytes: m.Bytes,
		Size: size, Bucket: m.Bucket, Stream: m.Stream, StreamCreated: m.StreamCreated.UTC(),
		Created: m.Created.UTC(), Producer: m.Producer, Exporter: s.opts.Exporter,
	}
	if err := s.upload(ctx, st, "SHA-256="+base64.URLEncoding.EncodeToString(digest)); err != nil {
		return nil, err
	}
	ok = true
	return st, nil
}

// verify reads the artifact in f from its start, checking it whole, and
// returns its manifest and length.
func verify(f *os.File) (artifact.Manifest, uint64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return artifact.Manifest{}, 0, err
	}
	r, err := artifact.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return artifact.Manifest{}, 0, err
	}
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			return artifact.Manifest{}, 0, err
		}
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return artifact.Manifest{}, 0, err
	}
	return r.Manifest(), uint64(size), nil
}

// upload puts st's file unless an object of that name (so of those bytes)
// exists already. An existing one is dated by its modification time, so
// the publish window counts from its upload, not from now.
func (s *Store) upload(ctx context.Context, st *staged, digest string) error {
	object := st.next.Object
	info, err := s.obs.GetInfo(ctx, object)
	switch {
	case err == nil && info.Digest == digest:
		now, err := s.serverNow(ctx)
		if err != nil {
			return err
		}
		st.started = time.Now().Add(-now.Sub(info.ModTime))
		return nil
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return fmt.Errorf("objstore: %s: %w", object, err)
	}
	if _, err := st.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("objstore: %w", err)
	}
	st.started = time.Now()
	put, err := s.obs.Put(ctx, jetstream.ObjectMeta{
		Name:        object,
		Description: "slipstream artifact",
		Metadata: map[string]string{
			"cursor":       strconv.FormatUint(st.next.Cursor, 10),
			"content_hash": st.next.ContentHash,
			"exporter":     st.next.Exporter,
		},
	}, bufio.NewReaderSize(st.file, 1<<20))
	if err != nil {
		return fmt.Errorf("objstore: uploading %s: %w", object, err)
	}
	st.uploaded = true
	if put.Digest != digest || put.Size != st.next.Size {
		return s.discard(st, nil, fmt.Errorf("objstore: uploaded %s as %d bytes with digest %s, the file is %d bytes with %s",
			object, put.Size, put.Digest, st.next.Size, digest))
	}
	return nil
}

// commit moves the pointer to st's payload: the last step of Publish.
func (s *Store) commit(ctx context.Context, st *staged) (Pointer, error) {
	for range maxCASAttempts {
		cur, err := s.readPointer(ctx, st.name)
		if err != nil {
			return Pointer{}, s.discard(st, nil, err)
		}
		move, err := decidePointer(cur, st.next)
		if err != nil {
			return Pointer{}, s.discard(st, cur, fmt.Errorf("objstore: publishing %s to %s: %w", st.next.Object, st.name, err))
		}
		if !move {
			return *cur, s.discard(st, cur, nil)
		}
		if elapsed := time.Since(st.started); !withinWindow(elapsed, s.opts.PublishWindow) {
			return Pointer{}, s.discard(st, cur, fmt.Errorf("%w: %s was uploaded %v ago, the window is %v",
				ErrPublishWindow, st.next.Object, elapsed.Round(time.Millisecond), s.opts.PublishWindow))
		}
		next := st.next
		if cur != nil {
			next.Previous = cur.Object
		}
		b, err := encodePointer(next)
		if err != nil {
			return Pointer{}, s.discard(st, cur, err)
		}
		var rev uint64
		if cur == nil {
			rev, err = s.ptrs.Create(ctx, st.name, b)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
		} else {
			rev, err = s.ptrs.Update(ctx, st.name, b, cur.Revision)
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
		}
		if err != nil {
			// The swap may have landed: the payload stays.
			return Pointer{}, fmt.Errorf("objstore: moving the pointer of %s to %s: %w", st.name, next.Object, err)
		}
		next.Revision = rev
		return next, nil
	}
	return Pointer{}, s.discard(st, nil, fmt.Errorf("objstore: the pointer of %s changed under %d attempts to move it", st.name, maxCASAttempts))
}

// discard removes st's payload if this publish uploaded it and the pointer
// cur (nil: re-read it) does not name it, and returns err joined with any
// failure to do so.
func (s *Store) discard(st *staged, cur *Pointer, err error) error {
	if !st.uploaded {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if cur == nil {
		var rerr error
		if cur, rerr = s.readPointer(ctx, st.name); rerr != nil {
			return errors.Join(err, fmt.Errorf("objstore: %s left for Prune: %w", st.next.Object, rerr))
		}
	}
	if !removable(cur, st.next.Object) {
		return err
	}
	if derr := s.obs.Delete(ctx, st.next.Object); derr != nil && !errors.Is(derr, jetstream.ErrObjectNotFound) {
		return errors.Join(err, fmt.Errorf("objstore: removing %s: %w", st.next.Object, derr))
	}
	return err
}
