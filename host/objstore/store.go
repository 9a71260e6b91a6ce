package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Options.
const (
	DefaultPointerHistory = 8
	DefaultPublishWindow  = 10 * time.Minute
	DefaultOpenRetries    = 3
)

// leaseMarkerTTL is how long the lease bucket keeps the marker the server
// leaves when a lease expires: the smallest the server allows.
const leaseMarkerTTL = time.Second

// Options configure a Store. The zero value is usable.
type Options struct {
	// Replicas of the buckets created by New; 0 is 1.
	Replicas int
	// PointerBucket is the KV bucket of the pointers; "" is
	// "<BUCKET>_pointers".
	PointerBucket string
	// LeaseBucket is the KV bucket of the export leases; "" is
	// "<BUCKET>_leases".
	LeaseBucket string
	// PointerHistory is the history kept per pointer key when New creates
	// the pointer bucket (2 to 64); 0 is DefaultPointerHistory.
	PointerHistory int
	// TempDir is where Publish writes an artifact before uploading it; ""
	// is os.TempDir().
	TempDir string
	// Exporter identifies this node in the pointers it publishes; "" is
	// "<hostname>/<pid>".
	Exporter string
	// PublishWindow is how long after its upload started an artifact may
	// still be named by the pointer; 0 is DefaultPublishWindow. Prune
	// refuses a grace shorter than it. It must exceed the time a payload
	// takes to upload.
	PublishWindow time.Duration
	// OpenRetries is how many more times Open reads the pointer again when
	// the payload it names is missing; 0 is DefaultOpenRetries, negative
	// is none.
	OpenRetries int
}

// Store publishes and opens the artifacts of the series of one Object Store
// bucket. Its methods are safe for concurrent use.
type Store struct {
	bucket string
	opts   Options
	obs    jetstream.ObjectStore
	ptrs   jetstream.KeyValue
	leases jetstream.KeyValue

	beforeGet func(Pointer) // a test's hook: Open read the pointer
}

// New binds to the Object Store bucket and to its pointer and lease KV
// buckets, creating any that is missing (with opts.Replicas). Nodes racing
// to create them all end bound to the same buckets. The lease bucket needs
// per-message TTLs: nats-server 2.11 or later.
func New(ctx context.Context, js jetstream.JetStream, bucket string, opts Options) (*Store, error) {
	return bind(ctx, js, bucket, opts, true)
}

// Bind binds to the buckets New creates, creating none: for readers, which
// should leave no trace in a NATS account where nothing was exported. When
// one of the buckets does not exist, nothing was ever published there, and
// the error wraps ErrNoArtifact.
func Bind(ctx context.Context, js jetstream.JetStream, bucket string, opts Options) (*Store, error) {
	return bind(ctx, js, bucket, opts, false)
}

func bind(ctx context.Context, js jetstream.JetStream, bucket string, opts Options, create bool) (*Store, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, fmt.Errorf("objstore: %v", err)
	}
	o, err := opts.withDefaults(bucket)
	if err != nil {
		return nil, err
	}
	s := &Store{bucket: bucket, opts: o}
	if s.obs, err = objectStore(ctx, js, jetstream.ObjectStoreConfig{
		Bucket: bucket, Description: "slipstream artifacts", Replicas: o.Replicas,
	}, create); err != nil {
		return nil, bindError("object store", bucket, err)
	}
	if s.ptrs, err = keyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: o.PointerBucket, Description: "slipstream artifact pointers of " + bucket,
		History: uint8(o.PointerHistory), Replicas: o.Replicas,
	}, create); err != nil {
		return nil, bindError("pointer bucket", o.PointerBucket, err)
	}
	if s.leases, err = keyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: o.LeaseBucket, Description: "slipstream export leases of " + bucket,
		History: 1, Replicas: o.Replicas, LimitMarkerTTL: leaseMarkerTTL,
	}, create); err != nil {
		return nil, bindError("lease bucket", o.LeaseBucket, err)
	}
	st, err := s.leases.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("objstore: lease bucket %s: %w", o.LeaseBucket, err)
	}
	if kst, ok := st.(*jetstream.KeyValueBucketStatus); ok && !kst.StreamInfo().Config.AllowMsgTTL {
		return nil, fmt.Errorf("objstore: lease bucket %s does not allow per-message TTLs: create it with a limit marker TTL", o.LeaseBucket)
	}
	return s, nil
}

// bindError says which bucket could not be bound; a missing one (Bind)
// means that nothing was published.
func bindError(what, bucket string, err error) error {
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w: %s %s does not exist", ErrNoArtifact, what, bucket)
	}
	return fmt.Errorf("objstore: %s %s: %w", what, bucket, err)
}

func (o Options) withDefaults(bucket string) (Options, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.PointerBucket == "" {
		o.PointerBucket = bucket + "_pointers"
	}
	if o.LeaseBucket == "" {
		o.LeaseBucket = bucket + "_leases"
	}
	if o.PointerHistory == 0 {
		o.PointerHistory = DefaultPointerHistory
	}
	if o.Exporter == "" {
		host, _ := os.Hostname()
		o.Exporter = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if o.PublishWindow == 0 {
		o.PublishWindow = DefaultPublishWindow
	}
	if o.OpenRetries == 0 {
		o.OpenRetries = DefaultOpenRetries
	}
	switch {
	case o.Replicas < 1 || o.Replicas > 5:
		return o, fmt.Errorf("objstore: %d replicas, want 1 to 5", o.Replicas)
	case o.PointerHistory < 2 || o.PointerHistory > 64:
		return o, fmt.Errorf("objstore: pointer history %d, want 2 to 64", o.PointerHistory)
	case o.PublishWindow < 0:
		return o, fmt.Errorf("objstore: negative publish window %v", o.PublishWindow)
	}
	for _, b := range []string{o.PointerBucket, o.LeaseBucket} {
		if err := checkBucket(b); err != nil {
			return o, fmt.Errorf("objstore: %v", err)
		}
	}
	if o.PointerBucket == o.LeaseBucket {
		return o, fmt.Errorf("objstore: the pointer and lease buckets are both %s", o.LeaseBucket)
	}
	return o, nil
}

// objectStore binds to an object store, creating it when missing and
// create is set. A racing creator's bucket is bound to as it is.
func objectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig, create bool) (jetstream.ObjectStore, error) {
	var err error
	for range 3 {
		var o jetstream.ObjectStore
		if o, err = js.ObjectStore(ctx, cfg.Bucket); !create || !errors.Is(err, jetstream.ErrBucketNotFound) {
			return o, err
		}
		if o, err = js.CreateObjectStore(ctx, cfg); !errors.Is(err, jetstream.ErrBucketExists) {
			return o, err
		}
	}
	return nil, err
}

// keyValue binds to a KV bucket, creating it when missing, as objectStore.
func keyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, create bool) (jetstream.KeyValue, error) {
	var err error
	for range 3 {
		var kv jetstream.KeyValue
		if kv, err = js.KeyValue(ctx, cfg.Bucket); !create || !errors.Is(err, jetstream.ErrBucketNotFound) {
			return kv, err
		}
		if kv, err = js.CreateKeyValue(ctx, cfg); !errors.Is(err, jetstream.ErrBucketExists) {
			return kv, err
		}
	}
	return nil, err
}

// readPointer returns series name's pointer, nil when it has none.
func (s *Store) readPointer(ctx context.Context, name string) (*Pointer, error) {
	e, err := s.ptrs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: reading the pointer of %s: %w", name, err)
	}
	p, err := decodePointer(name, e.Value())
	if err != nil {
		return nil, err
	}
	p.Revision, p.Published = e.Revision(), e.Created()
	return &p, nil
}

// Latest returns series name's pointer, or ErrNoArtifact.
func (s *Store) Latest(ctx context.Context, name string) (Pointer, error) {
	if err := checkName(name); err != nil {
		return Pointer{}, fmt.Errorf("objstore: %v", err)
	}
	p, err := s.readPointer(ctx, name)
	if err != nil {
		return Pointer{}, err
	}
	if p == nil {
		return Pointer{}, fmt.Errorf("%w: series %s of %s", ErrNoArtifact, name, s.bucket)
	}
	return *p, nil
}

// Open opens the payload series name's pointer names, and returns it with
// the pointer. The payload is an artifact; the reader checks it against
// the digest in its name as it is read (an error at its end when they
// differ), and artifact.NewReader checks the rest. ctx governs the reading
// too. When the payload is missing (a pruner removed it after the pointer
// moved past it), Open reads the pointer again, up to Options.OpenRetries
// times; ErrNoArtifact when there is no pointer.
func (s *Store) Open(ctx context.Context, name string) (io.ReadCloser, Pointer, error) {
	var missing string
	for attempt := 0; attempt <= max(s.opts.OpenRetries, 0); attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, Pointer{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			}
		}
		p, err := s.Latest(ctx, name)
		if err != nil {
			return nil, Pointer{}, err
		}
		if s.beforeGet != nil {
			s.beforeGet(p)
		}
		res, err := s.obs.Get(ctx, p.Object)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			missing = p.Object
			continue
		}
		if err != nil {
			return nil, Pointer{}, fmt.Errorf("objstore: opening %s: %w", p.Object, err)
		}
		info, err := res.Info()
		if err == nil && info.Digest != objectDigest(p.Object) {
			err = fmt.Errorf("objstore: %s: the object's digest %s does not match its name", p.Object, info.Digest)
		}
		if err != nil {
			res.Close()
			return nil, Pointer{}, err
		}
		return res, p, nil
	}
	return nil, Pointer{}, fmt.Errorf("%w: %s (series %s of %s), after %d reads of the pointer",
		ErrPayloadMissing, missing, name, s.bucket, max(s.opts.OpenRetries, 0)+1)
}

// objectDigest is the Object Store's form of the digest in a payload's
// name ("SHA-256=" and the base64url of the sum).
func objectDigest(object string) string {
	i := strings.LastIndexByte(object, '/')
	sum, err := hex.DecodeString(strings.TrimSuffix(object[i+1:], objectSuffix))
	if err != nil || len(sum) != sha256.Size {
		return ""
	}
	return "SHA-256=" + base64.URLEncoding.EncodeToString(sum)
}

// serverNow is the server's current time, as it reports it in the object
// store's stream info: the clock of the payloads' modification times.
func (s *Store) serverNow(ctx context.Context) (time.Time, error) {
	st, err := s.obs.Status(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("objstore: status of %s: %w", s.bucket, err)
	}
	ost, ok := st.(*jetstream.ObjectBucketStatus)
	if !ok || ost.StreamInfo() == nil || ost.StreamInfo().TimeStamp.IsZero() {
		return time.Time{}, fmt.Errorf("objstore: the server reports no time in the status of %s", s.bucket)
	}
	return ost.StreamInfo().TimeStamp, nil
}
