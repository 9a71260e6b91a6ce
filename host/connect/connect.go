// Package connect provides the NATS side of the service: the embedded server
// for single-node mode, the client connection with its credentials and TLS,
// and opening or creating the buckets the folds read.
package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/config"
)

// Embedded is an in-process NATS server with JetStream.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a NATS server with JetStream listening on listen
// (host:port) and storing under storeDir. It returns once the server accepts
// connections.
func StartEmbedded(listen, storeDir string, logger *slog.Logger) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen port %q: %w", portStr, err)
	}
	opts := &server.Options{
		ServerName: "slipstream-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		MaxPayload: 8 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if logger != nil {
		srv.SetLoggerV2(&serverLog{logger.With("component", "nats-server")}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s after 30s", listen)
	}
	return &Embedded{srv: srv}, nil
}

// URL is the client URL of the embedded server.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLog bridges the server's logger into slog.
type serverLog struct{ l *slog.Logger }

func (s *serverLog) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s *serverLog) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLog) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLog) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }

// Dial connects to url with the credentials and TLS settings of c. The
// connection reconnects forever; the folds' supervisors ride it out.
func Dial(url string, c config.NATS, logger *slog.Logger) (*nats.Conn, error) {
	name := c.Name
	if name == "" {
		name = "slipstream"
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(false),
	}
	if c.ConnectTimeout > 0 {
		opts = append(opts, nats.Timeout(time.Duration(c.ConnectTimeout)))
	}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.NKeySeed != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed %s: %w", c.NKeySeed, err)
		}
		opts = append(opts, o)
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if logger != nil {
		opts = append(opts,
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					logger.Warn("nats disconnected", "err", err)
				}
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				logger.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
			}),
		)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect %s: %w", redact(url), err)
	}
	return nc, nil
}

// OpenBucket returns the bucket, creating it with settings b when it does
// not exist and b is not nil.
func OpenBucket(ctx context.Context, js jetstream.JetStream, name string, b *config.Bucket) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) || b == nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      name,
		Description: b.Description,
		History:     uint8(max(b.History, 1)),
		TTL:         time.Duration(b.MaxAge),
		Replicas:    max(b.Replicas, 1),
		Storage:     jetstream.FileStorage,
	}
	if b.MaxBytes > 0 {
		cfg.MaxBytes = int64(b.MaxBytes)
	}
	if b.MaxValueSize > 0 {
		cfg.MaxValueSize = int32(b.MaxValueSize)
	}
	if b.Storage == "memory" {
		cfg.Storage = jetstream.MemoryStorage
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: create: %w", name, err)
	}
	if b.Discard == "old" {
		// KV buckets are created with DiscardNew; the stream may be switched.
		s, err := js.Stream(ctx, "KV_"+name)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", name, err)
		}
		sc := s.CachedInfo().Config
		sc.Discard = jetstream.DiscardOld
		if _, err := js.UpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("bucket %s: set discard old: %w", name, err)
		}
	}
	return kv, nil
}
