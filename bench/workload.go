package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// valueLen is the size of every value the bench writes.
const valueLen = 200

// publishWindow is how many async publishes may await their ack.
const publishWindow = 4096

// keyOf is the i-th key of a bucket: 39 bytes, shaped like a routing table,
// e.g. route.t0001.svc-00001.endpoint.00000001.
func keyOf(i int) string {
	return fmt.Sprintf("route.t%04d.svc-%05d.endpoint.%08d", i%10000, i/10%100000, i)
}

// values hands out 200-byte values of random alphanumerics: windows of one
// random pool, so that writing a million of them allocates nothing.
type values struct {
	pool []byte
	rng  *rand.Rand
}

func newValues(seed uint64) *values {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 's', 'l', 'i', 'p'}))
	pool := make([]byte, 1<<20)
	for i := range pool {
		pool[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return &values{pool: pool, rng: rng}
}

// next is a random value; callers must not modify it.
func (v *values) next() []byte {
	off := v.rng.IntN(len(v.pool) - valueLen)
	return v.pool[off : off+valueLen : off+valueLen]
}

// indexed is a value that starts with "%010d-" of i, so that an observer can
// tell which put it sees.
func (v *values) indexed(i int) []byte {
	out := make([]byte, 0, valueLen)
	out = fmt.Appendf(out, "%010d-", i)
	return append(out, v.next()[:valueLen-len(out)]...)
}

// parseIndex reads the index of an indexed value, or -1.
func parseIndex(val []byte) int {
	if len(val) < 11 || val[10] != '-' {
		return -1
	}
	n, err := strconv.Atoi(string(val[:10]))
	if err != nil {
		return -1
	}
	return n
}

// startNATS starts an embedded server with JetStream on a free loopback port.
func startNATS(dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server not ready after 15s")
	}
	return s, nil
}

// connect opens a connection and a JetStream context for async publishing.
func connect(url, name string, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name(name))
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// publisher writes to a bucket with PublishAsync and counts failed acks.
type publisher struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	failed atomic.Int64
	wait   time.Duration
}

func newPublisher(url string, wait time.Duration) (*publisher, error) {
	p := &publisher{wait: wait}
	var err error
	p.nc, p.js, err = connect(url, "slipstream-bench-writer",
		jetstream.WithPublishAsyncMaxPending(publishWindow),
		jetstream.WithPublishAsyncTimeout(time.Minute),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { p.failed.Add(1) }))
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (p *publisher) close() { p.nc.Close() }

// publish sends n messages made by msg, as fast as the ack window allows,
// and waits until every one is acknowledged.
func (p *publisher) publish(ctx context.Context, n int, msg func(i int) (subject string, data []byte)) error {
	for i := range n {
		subject, data := msg(i)
		if _, err := p.js.PublishAsync(subject, data, jetstream.WithStallWait(p.wait)); err != nil {
			return fmt.Errorf("publish %d of %d: %w", i+1, n, err)
		}
		if i%publishWindow == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(p.wait):
		return fmt.Errorf("%d publishes still unacknowledged after %v", p.js.PublishAsyncPending(), p.wait)
	}
	if f := p.failed.Swap(0); f > 0 {
		return fmt.Errorf("%d of %d publishes failed", f, n)
	}
	return nil
}

// createBucket creates a History 1 bucket on file storage.
func createBucket(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", name, err)
	}
	return kv, nil
}

// streamState reads the retained message count and last sequence of a
// bucket's stream.
func streamState(ctx context.Context, js jetstream.JetStream, bucket string) (msgs, last uint64, err error) {
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.State.Msgs, info.State.LastSeq, nil
}

// subject is the stream subject of a key.
func subject(bucket, key string) string { return "$KV." + bucket + "." + key }
