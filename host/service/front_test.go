package service_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/slipstreamkv/slipstream/internal/testenv"
)

// plainTOML is tokenTOML without the token and TLS.
var plainTOML = strings.NewReplacer(
	"token_file = \"api.token\"\n", "", "tls_cert = \"cert.pem\"\n", "", "tls_key = \"key.pem\"\n", "",
).Replace(tokenTOML)

// TestFastReadsAnswerAsNetHTTP reads keys of a real fold through both
// halves of the API: each URI once as the first request of a connection
// (a plain key read is then the fast server's) and once after a request
// that hands the connection to net/http. The two answers must agree in
// status, body and headers; the fast server must have answered exactly
// the plain reads of keys (the service's counter says which it did),
// leaving paths that ServeMux cleans or escapes it does not take to
// net/http.
func TestFastReadsAnswerAsNetHTTP(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.JetStream(t, srv.ClientURL())
	kv := testenv.Bucket(t, js, jetstream.KeyValueConfig{Bucket: "cfg"})
	var last uint64
	for k, v := range map[string]string{"k.a": "alpha", "k.b": "\xff\x00\xfe", "k.c": "", "dir/x": "slash", "dir/y/": "trailing"} {
		rev, err := kv.Put(context.Background(), k, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, rev)
	}
	r := start(t, t.TempDir(), srv.ClientURL(), plainTOML)
	r.waitReady(last)
	addr := r.svc.HTTPAddr()

	for _, c := range []struct {
		uri  string
		fast bool
		code int
	}{
		{"/v1/folds/f/keys/k.a", true, 200},
		{"/v1/folds/f/keys/k.b", true, 200},
		{"/v1/folds/f/keys/k.c", true, 200},
		{"/v1/folds/f/keys/k.nope", true, 404},
		{"/v1/folds/f/keys/dir/x", true, 200},
		{"/v1/folds/f/keys/dir%2Fx", true, 200},
		{"/v1/folds/f/keys/k%2Ea", true, 200},
		{"/v1/folds/f/keys/dir/y/", true, 200},
		{"/v1/folds/f/keys/dir%2F..%2Fk.a", true, 404}, // ServeMux cleans the path as sent
		{"/v1/folds/f/keys/dir/../k.a", false, 307},
		{"/v1/folds/f/keys//k.a", false, 307},
		{"/v1/folds/f/keys/%zz", false, 400},
		{"/v1/folds/f/keys/dir%2F%2Fx|", false, 307}, // net/url escapes it again: %2F becomes /
		{"/v1/folds/f/keys/dir%2F..%2Fk.a\xc3\xa9", false, 307},
		{"/v1/folds/f/keys/k.a?", false, 200},
		{"/v1/folds/f/keys/k.a?min_cursor=1", false, 200},
		{"/v1/folds/nofold/keys/k.a", true, 404},
		{"/v1/folds/%66/keys/k.a", false, 200},
		{"/v1/folds/f/keys/", false, 0},
	} {
		before := fastReads(t, addr)
		fast := rawGet(t, addr, "", c.uri)
		counted := fastReads(t, addr) - before
		slow := rawGet(t, addr, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", c.uri)
		if (counted == 1) != c.fast || counted > 1 {
			t.Errorf("%s: the fast server answered %d reads, want fast=%t", c.uri, counted, c.fast)
		}
		if c.code != 0 && fast.StatusCode != c.code {
			t.Errorf("%s: status %d, want %d", c.uri, fast.StatusCode, c.code)
		}
		if got, want := describe(fast), describe(slow); got != want {
			t.Errorf("%s: the first request of a connection was answered\n%s\nand the same on net/http's connection\n%s", c.uri, got, want)
		}
	}
}

// answer is what TestFastReadsAnswerAsNetHTTP compares of a response.
type answer struct {
	StatusCode int
	Header     http.Header
	Body       string
}

func describe(a answer) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(a.StatusCode))
	for _, h := range []string{"Content-Type", "Content-Length", "Location", "Retry-After", "Slipstream-Generation", "Slipstream-Cursor", "Slipstream-Revision"} {
		b.WriteString(" " + h + "=" + strings.Join(a.Header.Values(h), ","))
	}
	b.WriteString(" body=" + strconv.Quote(a.Body))
	return b.String()
}

// rawGet sends first (when set) and GET uri on a new connection, in one
// write, and returns the answer to the GET.
func rawGet(t *testing.T, addr, first, uri string) answer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, first+"GET "+uri+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("GET %s: %v", uri, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: %v", uri, err)
		}
		if first == "" || n == 1 {
			return answer{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(body)}
		}
	}
}

// fastReads is the service's count of the fast server's key reads.
func fastReads(t *testing.T, addr string) int {
	t.Helper()
	return testenv.Counter(t, testenv.Scrape(t, addr), "slipstream_http_fast_reads_total")
}
