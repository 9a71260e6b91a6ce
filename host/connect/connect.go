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
	neturl "net/url"
	"strconv"
	"strings"
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

// embeddedReadyTimeout bounds how long an embedded server may take to
// accept connections when it reports nothing wrong.
const embeddedReadyTimeout = 30 * time.Second

// StartEmbedded starts a NATS server with JetStream listening on listen
// (host:port) and storing under storeDir. It returns once the server accepts
// connections, or with the server's own reason as soon as it gives up (an
// address in use, a store directory it cannot use), or when ctx ends.
func StartEmbedded(ctx context.Context, listen, storeDir string, logger *slog.Logger) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen port %q: %w", portStr, err)
	}
	// A taken address is the common mistake: say so plainly. (The server's
	// own report below still covers what happens between here and its bind.)
	if l, err := net.Listen("tcp", listen); err != nil {
		return nil, fmt.Errorf("embedded nats: cannot listen on %s: %s", listen, dialCause(err))
	} else {
		l.Close()
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
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The server reports why it gives up through its logger's Fatalf and
	// then waits forever; the log bridge hands that reason back here.
	sl := &serverLog{l: logger.With("component", "nats-server"), fatal: make(chan string, 1)}
	srv.SetLoggerV2(sl, false, false, false)
	go srv.Start()
	deadline := time.Now().Add(embeddedReadyTimeout)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		fail := func(format string, a ...any) (*Embedded, error) {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("embedded nats on %s: "+format, append([]any{listen}, a...)...)
		}
		select {
		case reason := <-sl.fatal:
			return fail("%s", reason)
		case <-ctx.Done():
			return fail("%w", ctx.Err())
		default:
		}
		if time.Now().After(deadline) {
			return fail("not ready after %s", embeddedReadyTimeout)
		}
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

// serverLog bridges the server's logger into slog, and hands the first
// fatal message to whoever waits for the server to start.
type serverLog struct {
	l     *slog.Logger
	fatal chan string
}

func (s *serverLog) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s *serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	s.l.Error(msg)
	select {
	case s.fatal <- msg:
	default:
	}
}
func (s *serverLog) Errorf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLog) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Tracef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }

// Dial connects to url with the credentials and TLS settings of c. The
// connection reconnects forever; the folds' supervisors ride it out. The
// first connect is not retried: a server that cannot be reached at start is
// an error naming the URL and why, and ctx ending stops the attempt.
func Dial(ctx context.Context, url string, c config.NATS, logger *slog.Logger) (*nats.Conn, error) {
	opts, err := dialOptions(c, logger)
	if err != nil {
		return nil, err
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("nats: connect %s: %w", redact(url), explainConnect(ctx, url, r.err))
		}
		return r.nc, nil
	case <-ctx.Done():
		// The attempt goes on in the background; close what it yields.
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("nats: connect %s: %w", redact(url), ctx.Err())
	}
}

func dialOptions(c config.NATS, logger *slog.Logger) ([]nats.Option, error) {
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
	return opts, nil
}

// explainConnect adds what nats.go leaves out of "no servers available":
// the dial error of each server of url.
func explainConnect(ctx context.Context, url string, err error) error {
	if !errors.Is(err, nats.ErrNoServers) {
		return err
	}
	var why []string
	for _, addr := range serverAddrs(url) {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, derr := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
		cancel()
		if derr != nil {
			why = append(why, addr+": "+dialCause(derr))
			continue
		}
		conn.Close()
		why = append(why, addr+" accepts connections but did not complete the NATS handshake")
	}
	if len(why) == 0 {
		return err
	}
	return fmt.Errorf("no server answered (%s)", strings.Join(why, "; "))
}

// serverAddrs lists host:port of each server of a comma-separated NATS URL.
func serverAddrs(url string) []string {
	var out []string
	for _, u := range strings.Split(url, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		p, err := neturl.Parse(u)
		if err != nil || p.Host == "" {
			continue
		}
		host, port := p.Hostname(), p.Port()
		if port == "" {
			port = strconv.Itoa(nats.DefaultPort)
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out
}

// dialCause is a dial or listen error without its "dial tcp ADDR:" prefix.
func dialCause(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	return err.Error()
}

// OpenBucket returns the bucket, creating it with settings b when it does
// not exist and b is not nil.
func OpenBucket(ctx context.Context, js jetstream.JetStream, name string, b *config.Bucket) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err == nil {
		return kv, nil
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) && b == nil {
		return nil, fmt.Errorf("bucket %s does not exist, and the config has no [bucket.%s] table to create it with", name, name)
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
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
