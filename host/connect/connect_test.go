package connect_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/connect"
)

func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, t.TempDir(), true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestDialAuth(t *testing.T) {
	tok := startServer(t, &server.Options{Authorization: "s3cret"})
	up := startServer(t, &server.Options{Username: "ops", Password: "pw"})
	upURL := strings.Replace(up.ClientURL(), "nats://", "nats://ops:pw@", 1)
	for _, tc := range []struct {
		name string
		url  string
		cfg  config.NATS
		ok   bool
	}{
		{"token", tok.ClientURL(), config.NATS{Token: "s3cret"}, true},
		{"wrong token", tok.ClientURL(), config.NATS{Token: "nope"}, false},
		{"user and password in the URL", upURL, config.NATS{}, true},
		{"no credentials", up.ClientURL(), config.NATS{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := connect.Dial(context.Background(), tc.url, tc.cfg, nil)
			if (err == nil) != tc.ok {
				t.Fatalf("Dial: %v, want success %v", err, tc.ok)
			}
			if err == nil {
				nc.Close()
			} else if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, into dir.
func pki(t *testing.T, dir string) (ca, srvCert, srvKey, cliCert, cliKey string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage, name string) (string, string) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	srvCert, srvKey = leaf(2, x509.ExtKeyUsageServerAuth, "server")
	cliCert, cliKey = leaf(3, x509.ExtKeyUsageClientAuth, "client")
	return
}

func TestDialTLSWithClientCertificate(t *testing.T) {
	ca, sc, sk, cc, ck := pki(t, t.TempDir())
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: sc, KeyFile: sk, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tc})
	url := strings.Replace(s.ClientURL(), "nats://", "tls://", 1)
	nc, err := connect.Dial(context.Background(), url, config.NATS{TLSCA: ca, TLSCert: cc, TLSKey: ck}, nil)
	if err != nil {
		t.Fatalf("Dial with CA and client certificate: %v", err)
	}
	if st, err := nc.TLSConnectionState(); err != nil || st.Version < tls.VersionTLS12 {
		t.Errorf("not a TLS connection: %v %v", st.Version, err)
	}
	nc.Close()
	if nc, err := connect.Dial(context.Background(), url, config.NATS{TLSCA: ca}, nil); err == nil {
		nc.Close()
		t.Fatal("Dial without the client certificate succeeded against a server that verifies clients")
	}
}

func TestOpenBucketCreatesWithSettings(t *testing.T) {
	s := startServer(t, &server.Options{})
	nc, err := connect.Dial(context.Background(), s.ClientURL(), config.NATS{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := connect.OpenBucket(ctx, js, "absent", nil); err == nil {
		t.Fatal("opening a missing bucket without settings succeeded")
	}
	b := &config.Bucket{History: 5, MaxBytes: 1 << 20, MaxAge: config.Duration(time.Hour), Replicas: 1,
		Storage: "memory", Discard: "old", MaxValueSize: 4096}
	if _, err := connect.OpenBucket(ctx, js, "made", b); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_made")
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if c.MaxMsgsPerSubject != 5 || c.MaxBytes != 1<<20 || c.MaxAge != time.Hour ||
		c.Storage != jetstream.MemoryStorage || c.Discard != jetstream.DiscardOld || c.MaxMsgSize != 4096 {
		t.Errorf("stream config %+v does not carry the bucket settings", c)
	}
	// An existing bucket is used as it is.
	if _, err := connect.OpenBucket(ctx, js, "made", &config.Bucket{History: 1}); err != nil {
		t.Fatal(err)
	}
}
