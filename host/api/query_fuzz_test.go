package api

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// FuzzScanQuery parses the raw query of GET /v1/folds/{fold}/keys as the
// server does (url.URL.Query drops what does not parse) and reads it with
// parseScan. A limit is accepted exactly when it is a decimal number from 1
// to maxScanLimit, and then the range asks for one entry more; without a
// limit the page is 1000. The prefix and after= pass through as given, and
// after= absent stays nil, unlike after= empty. A refusal says what to send.
func FuzzScanQuery(f *testing.F) {
	for _, q := range []string{
		"",
		"prefix=a&after=a.b&limit=10",
		"limit=1",
		"limit=10000",
		"limit=10001",
		"limit=0",
		"limit=-1",
		"limit=+5",
		"limit=%2B5",
		"limit=007",
		"limit=1e3",
		"limit=%201",
		"limit=99999999999999999999",
		"limit=&limit=abc",
		"limit=2&limit=0",
		"after=",
		"after",
		"after=%ff%00&prefix=%e2%82",
		"prefix=a;b&limit=3",
		"prefix=%zz&limit=3",
		"limit=%zz",
		"prefix=a+b&after=c%2Bd",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		rng, limit, err := parseScan(q)
		want, ok := wantLimit(q.Get("limit"))
		if !ok {
			if err == nil {
				t.Fatalf("query %q: limit %q accepted as %d", raw, q.Get("limit"), limit)
			}
			checkRefusal(t, err)
			return
		}
		if err != nil {
			t.Fatalf("query %q: limit %q refused: %v", raw, q.Get("limit"), err)
		}
		if limit != want || limit < 1 || limit > maxScanLimit {
			t.Fatalf("query %q: limit %d, want %d", raw, limit, want)
		}
		if rng.Limit != limit+1 {
			t.Fatalf("query %q: range limit %d for a page of %d", raw, rng.Limit, limit)
		}
		if !bytes.Equal(rng.Prefix, []byte(q.Get("prefix"))) {
			t.Fatalf("query %q: prefix %q, want %q", raw, rng.Prefix, q.Get("prefix"))
		}
		if q.Has("after") != (rng.After != nil) || !bytes.Equal(rng.After, []byte(q.Get("after"))) {
			t.Fatalf("query %q: after %q (nil: %v), want %q (present: %v)", raw, rng.After, rng.After == nil, q.Get("after"), q.Has("after"))
		}
		if rng.Start != nil || rng.End != nil || rng.KeysOnly {
			t.Fatalf("query %q: range %+v sets more than prefix, after and limit", raw, rng)
		}
	})
}

// wantLimit is the page size a limit= asks for, worked out on its own: none
// is 1000, else an optional sign and decimal digits from 1 to maxScanLimit.
func wantLimit(s string) (int, bool) {
	if s == "" {
		return 1000, true
	}
	neg := s[0] == '-'
	if s[0] == '+' || neg {
		s = s[1:]
	}
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	if s = strings.TrimLeft(s, "0"); neg || s == "" || len(s) > len(strconv.Itoa(maxScanLimit)) {
		return 0, false
	}
	n := 0
	for _, c := range s {
		n = 10*n + int(c-'0')
	}
	return n, n <= maxScanLimit
}

// checkRefusal: the message says which parameter is wrong and what it may be.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if !strings.Contains(msg, "limit") || !strings.Contains(msg, "from 1 to "+strconv.Itoa(maxScanLimit)) {
		t.Fatalf("refusal %q does not say what limit to send", msg)
	}
}

func TestParseScan(t *testing.T) {
	for _, tt := range []struct {
		query        string
		limit        int // 0: refused
		prefix       string
		after        string
		afterPresent bool
	}{
		{query: "", limit: 1000},
		{query: "limit=", limit: 1000},
		{query: "limit=1", limit: 1},
		{query: "limit=250", limit: 250},
		{query: "limit=10000", limit: 10000},
		{query: "limit=%2B7", limit: 7},
		{query: "limit=+7"}, // a space, then 7
		{query: "limit=0010", limit: 10},
		{query: "limit=3&limit=x", limit: 3}, // the first value counts
		{query: "limit=0"},
		{query: "limit=-5"},
		{query: "limit=10001"},
		{query: "limit=1e3"},
		{query: "limit=ten"},
		{query: "limit=%201"},
		{query: "limit=5.0"},
		{query: "limit=99999999999999999999"},
		{query: "prefix=user.&limit=2", limit: 2, prefix: "user."},
		{query: "prefix=a%2Fb+c", limit: 1000, prefix: "a/b c"},
		{query: "after=user.42", limit: 1000, after: "user.42", afterPresent: true},
		{query: "after=", limit: 1000, afterPresent: true},
		{query: "after", limit: 1000, afterPresent: true},
		{query: "prefix=u&after=u.1&limit=50", limit: 50, prefix: "u", after: "u.1", afterPresent: true},
		{query: "prefix=u&after=u.1&limit=50000"},
	} {
		t.Run(tt.query, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			rng, limit, err := parseScan(q)
			if tt.limit == 0 {
				if err == nil {
					t.Fatalf("accepted, limit %d, range %+v", limit, rng)
				}
				if want := "limit must be a number from 1 to 10000"; err.Error() != want {
					t.Fatalf("error %q, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if limit != tt.limit || rng.Limit != tt.limit+1 {
				t.Errorf("limit %d, range limit %d; want %d and %d", limit, rng.Limit, tt.limit, tt.limit+1)
			}
			if string(rng.Prefix) != tt.prefix {
				t.Errorf("prefix %q, want %q", rng.Prefix, tt.prefix)
			}
			if string(rng.After) != tt.after || (rng.After != nil) != tt.afterPresent {
				t.Errorf("after %q (nil: %v), want %q (present: %v)", rng.After, rng.After == nil, tt.after, tt.afterPresent)
			}
		})
	}
}
