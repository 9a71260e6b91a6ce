package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/objstore"
)

// series binds the Object Store buckets of the artifact series the service
// reads (bootstrap_from, import) and writes (export), once per bucket.
type series struct {
	js   jetstream.JetStream
	opts objstore.Options // all but Replicas

	mu     sync.Mutex
	stores map[string]*objstore.Store
}

func newSeries(js jetstream.JetStream, opts objstore.Options) *series {
	return &series{js: js, opts: opts, stores: map[string]*objstore.Store{}}
}

// store binds bucket's Store: creating its buckets (with replicas) when
// create is set, else only binding to them, so that a reader leaves nothing
// behind where nothing was exported (an error wrapping
// objstore.ErrNoArtifact then). Once bound, the buckets exist, so the bound
// Store serves readers and writers alike.
func (s *series) store(ctx context.Context, bucket string, replicas int, create bool) (*objstore.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stores[bucket]; ok {
		return st, nil
	}
	opts := s.opts
	opts.Replicas = replicas
	bind := objstore.Bind
	if create {
		bind = objstore.New
	}
	st, err := bind(ctx, s.js, bucket, opts)
	if err != nil {
		return nil, err
	}
	s.stores[bucket] = st
	return st, nil
}

// open opens the current artifact of the series at loc. No series, or no
// buckets, is an error wrapping fold.ErrNoArtifact.
func (s *series) open(ctx context.Context, loc objstore.Location) (io.ReadCloser, objstore.Pointer, error) {
	st, err := s.store(ctx, loc.Bucket, 0, false)
	if err == nil {
		var rc io.ReadCloser
		var p objstore.Pointer
		if rc, p, err = st.Open(ctx, loc.Name); err == nil {
			return rc, p, nil
		}
	}
	if errors.Is(err, objstore.ErrNoArtifact) {
		err = fmt.Errorf("%w: %s: %w", fold.ErrNoArtifact, loc, err)
	}
	return nil, objstore.Pointer{}, err
}

// isSeries reports whether src names an Object Store series.
func isSeries(src string) bool { return strings.HasPrefix(src, objstore.Scheme+"://") }

// openSource opens the artifact at src: a file, a peer's http(s):// URL or
// an Object Store series, which is read through the service's connection.
func (s *Service) openSource(ctx context.Context, src string) (io.ReadCloser, error) {
	if !isSeries(src) {
		return OpenArtifact(ctx, src, string(s.cfg.HTTP.Token))
	}
	loc, err := objstore.ParseURL(src)
	if err != nil {
		return nil, err
	}
	rc, p, err := s.series.open(ctx, loc)
	if err != nil {
		return nil, err
	}
	s.log.Info("opening an artifact of a series", "series", loc.String(), "cursor", p.Cursor,
		"records", p.Records, "size", p.Size, "exporter", p.Exporter)
	return rc, nil
}

// Publish exports the fold named name and publishes the artifact as the
// current one of the series to (nats-object://BUCKET/NAME), creating the
// series' buckets with replicas when they are missing. An export that the
// series' pointer has already passed returns an error wrapping
// objstore.ErrSuperseded.
func (s *Service) Publish(ctx context.Context, name, to string, replicas int) (objstore.Pointer, error) {
	f, ok := s.fold(name)
	if !ok {
		return objstore.Pointer{}, fmt.Errorf("%w: %q", ErrNoFold, name)
	}
	loc, err := objstore.ParseURL(to)
	if err != nil {
		return objstore.Pointer{}, err
	}
	return s.publish(ctx, f, loc, replicas)
}

func (s *Service) publish(ctx context.Context, f *fold.Fold, loc objstore.Location, replicas int) (objstore.Pointer, error) {
	st, err := s.series.store(ctx, loc.Bucket, replicas, true)
	if err != nil {
		return objstore.Pointer{}, err
	}
	start := time.Now()
	p, err := st.Publish(ctx, loc.Name, func(w io.Writer) (artifact.Manifest, error) {
		return f.Export(ctx, w, s.opts.Producer)
	})
	if err != nil {
		return p, err
	}
	s.log.Info("published an artifact", "fold", f.Name(), "series", loc.String(), "cursor", p.Cursor,
		"records", p.Records, "size", p.Size, "took", time.Since(start).Round(time.Millisecond).String())
	return p, nil
}

// ErrNoFold is wrapped by the errors about a fold the config does not have.
var ErrNoFold = errors.New("no such fold")

func (s *Service) fold(name string) (*fold.Fold, bool) {
	for _, f := range s.Folds() {
		if f.Name() == name {
			return f, true
		}
	}
	return nil, false
}
