package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// agreeing is a bucket and a fold listing that agree, values text and binary.
func agreeing() (map[string]kvEntry, []foldEntry) {
	bucket := map[string]kvEntry{
		"a":   {Revision: 3, Value: []byte("one")},
		"b":   {Revision: 7, Value: []byte{0xff, 0x00, 0xfe}},
		"c":   {Revision: 9, Value: []byte{}},
		"d.e": {Revision: 12, Value: []byte("four")},
	}
	fold := []foldEntry{
		{Key: "a", Revision: 3, Value: []byte("one")},
		{Key: "b", Revision: 7, Value: []byte{0xff, 0x00, 0xfe}},
		{Key: "c", Revision: 9, Value: []byte{}},
		{Key: "d.e", Revision: 12, Value: []byte("four")},
	}
	return bucket, fold
}

func TestCompareAgreeing(t *testing.T) {
	bucket, fold := agreeing()
	if d := compare(bucket, fold); len(d) != 0 {
		t.Fatalf("equal listings: %v", d)
	}
	if d := compare(map[string]kvEntry{}, nil); len(d) != 0 {
		t.Fatalf("empty listings: %v", d)
	}
}

// TestCompareFindsEachDivergence: every way a fold can differ from its
// bucket is reported, as one divergence on the right key.
func TestCompareFindsEachDivergence(t *testing.T) {
	cases := []struct {
		name, kind, key string
		spoil           func(map[string]kvEntry, []foldEntry) []foldEntry
	}{
		{"fold missing a key", "missing", "b", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			return append(f[:1:1], f[2:]...)
		}},
		{"fold missing the last key", "missing", "d.e", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			return f[:3]
		}},
		{"fold holding an extra key", "extra", "bb", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			return append(f[:2:2], append([]foldEntry{{Key: "bb", Revision: 8, Value: []byte("x")}}, f[2:]...)...)
		}},
		{"fold holding a deleted key", "extra", "z", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			return append(f, foldEntry{Key: "z", Revision: 1, Value: []byte("gone")})
		}},
		{"different value", "value", "a", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			f[0].Value = []byte("uno")
			return f
		}},
		{"different binary value", "value", "b", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			f[1].Value = []byte{0xff, 0x00}
			return f
		}},
		{"empty value where the bucket has one", "value", "d.e", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			f[3].Value = nil
			return f
		}},
		{"a value where the bucket has an empty one", "value", "c", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			f[2].Value = []byte("x")
			return f
		}},
		{"older revision, same value", "revision", "d.e", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			f[3].Revision = 11
			return f
		}},
		{"older revision and value", "value+revision", "a", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			f[0].Revision, f[0].Value = 2, []byte("zero")
			return f
		}},
		{"bucket moved on", "value+revision", "a", func(b map[string]kvEntry, f []foldEntry) []foldEntry {
			b["a"] = kvEntry{Revision: 20, Value: []byte("newer")}
			return f
		}},
		{"key listed twice", "duplicate", "b", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			return append(f[:2:2], append([]foldEntry{f[1]}, f[2:]...)...)
		}},
		{"keys out of order", "out-of-order", "a", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			f[0], f[1] = f[1], f[0]
			return f
		}},
		{"entry without a value", "malformed", "c", func(_ map[string]kvEntry, f []foldEntry) []foldEntry {
			f[2].Value, f[2].Malformed = nil, true
			return f
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bucket, fold := agreeing()
			fold = tc.spoil(bucket, fold)
			d := compare(bucket, fold)
			if len(d) != 1 || d[0].Kind != tc.kind || d[0].Key != tc.key {
				t.Fatalf("got %v, want one %s divergence on %q", d, tc.kind, tc.key)
			}
			if d[0].String() == "" {
				t.Fatal("empty description")
			}
		})
	}
}

// TestCompareCountsEveryKey: several divergent keys are each counted.
func TestCompareCountsEveryKey(t *testing.T) {
	bucket, fold := agreeing()
	fold = fold[1:]                                                   // a missing
	fold[0].Value = []byte("changed")                                 // b value
	fold = append(fold, foldEntry{Key: "x", Revision: 1, Value: nil}) // x extra
	bucket["y"] = kvEntry{Revision: 30, Value: []byte("new")}         // y missing
	d := compare(bucket, fold)
	var got []string
	for _, x := range d {
		got = append(got, x.Kind+":"+x.Key)
	}
	if want := "missing:a value:b extra:x missing:y"; strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
}

// TestCompareAgainstEmpty: a fold that lost everything, or kept everything
// of a purged bucket, diverges on every key.
func TestCompareAgainstEmpty(t *testing.T) {
	bucket, fold := agreeing()
	if d := compare(bucket, nil); len(d) != len(bucket) {
		t.Errorf("empty fold: %d divergences, want %d", len(d), len(bucket))
	}
	if d := compare(map[string]kvEntry{}, fold); len(d) != len(fold) {
		t.Errorf("empty bucket: %d divergences, want %d", len(d), len(fold))
	}
}

func TestDecodePage(t *testing.T) {
	body := `{"entries":[
		{"key":"a","revision":3,"value":"one"},
		{"key":"b","revision":7,"value_base64":"/wD+"},
		{"key":"c","revision":9,"value":""},
		{"key":"d","revision":10}
	],"next":"d"}`
	entries, next, err := decodePage([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if next != "d" || len(entries) != 4 {
		t.Fatalf("next %q, %d entries", next, len(entries))
	}
	bucket := map[string]kvEntry{
		"a": {Revision: 3, Value: []byte("one")},
		"b": {Revision: 7, Value: []byte{0xff, 0x00, 0xfe}},
		"c": {Revision: 9, Value: []byte{}},
		"d": {Revision: 10, Value: []byte{}},
	}
	d := compare(bucket, entries)
	if len(d) != 1 || d[0].Kind != "malformed" || d[0].Key != "d" {
		t.Fatalf("got %v, want only d malformed (neither value nor value_base64)", d)
	}
	if _, _, err := decodePage([]byte(`{"next":""}`)); err == nil {
		t.Error("a page without entries was accepted")
	}
	if _, _, err := decodePage([]byte(`not json`)); err == nil {
		t.Error("garbage was accepted")
	}
}

// fakeScan serves GET /v1/folds/f/keys over keys like slipstream's API,
// with pages of at most limit entries.
func fakeScan(t *testing.T, keys []string, limit int, broken bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/folds/f/keys" || r.URL.Query().Get("limit") != "10000" {
			http.Error(w, "bad request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		start := 0
		if r.URL.Query().Has("after") {
			after := r.URL.Query().Get("after")
			for start < len(keys) && keys[start] <= after {
				start++
			}
			if broken {
				start = 0
			}
		}
		var parts []string
		end := min(start+limit, len(keys))
		for i := start; i < end; i++ {
			parts = append(parts, fmt.Sprintf(`{"key":%q,"revision":%d,"value":"v"}`, keys[i], i+1))
		}
		next := ""
		if end < len(keys) {
			next = keys[end-1]
		}
		fmt.Fprintf(w, `{"entries":[%s],"next":%q}`, strings.Join(parts, ","), next)
	}))
}

func TestListFoldPaginates(t *testing.T) {
	var keys []string
	for i := range 25 {
		keys = append(keys, fmt.Sprintf("k.%03d", i))
	}
	srv := fakeScan(t, keys, 10, false)
	defer srv.Close()
	got, err := listFold(context.Background(), srv.Client(), strings.TrimPrefix(srv.URL, "http://"), "f")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("%d entries, want %d", len(got), len(keys))
	}
	bucket := map[string]kvEntry{}
	for i, k := range keys {
		bucket[k] = kvEntry{Revision: uint64(i + 1), Value: []byte("v")}
	}
	if d := compare(bucket, got); len(d) != 0 {
		t.Fatalf("paginated listing differs: %v", d)
	}
	// A server whose next page does not move on is an error, not a loop.
	bad := fakeScan(t, keys, 10, true)
	defer bad.Close()
	if _, err := listFold(context.Background(), bad.Client(), strings.TrimPrefix(bad.URL, "http://"), "f"); err == nil {
		t.Fatal("a scan that repeats its first page was accepted")
	}
}

func TestCheckRead(t *testing.T) {
	bucket := map[string]kvEntry{"a": {Revision: 5, Value: []byte("five")}}
	cases := []struct {
		name string
		key  string
		a    readAnswer
		ok   bool
	}{
		{"right value", "a", readAnswer{status: 200, body: []byte("five"), revision: "5"}, true},
		{"deleted key 404", "gone", readAnswer{status: 404, body: []byte(`{"error":"key not found"}`)}, true},
		{"wrong value", "a", readAnswer{status: 200, body: []byte("four"), revision: "5"}, false},
		{"wrong revision", "a", readAnswer{status: 200, body: []byte("five"), revision: "4"}, false},
		{"no revision", "a", readAnswer{status: 200, body: []byte("five")}, false},
		{"live key 404", "a", readAnswer{status: 404}, false},
		{"deleted key 200", "gone", readAnswer{status: 200, body: []byte("old"), revision: "2"}, false},
		{"503 after recovery", "a", readAnswer{status: 503}, false},
		{"502", "gone", readAnswer{status: 502}, false},
		{"transport error", "a", readAnswer{err: fmt.Errorf("connection refused")}, false},
	}
	for _, tc := range cases {
		if msg := checkRead(tc.key, bucket, tc.a); (msg == "") != tc.ok {
			t.Errorf("%s: checkRead = %q, want ok=%v", tc.name, msg, tc.ok)
		}
	}
}

// TestLiveReaderJudges: during faults, 200 with a value the key had at that
// revision, 404 and 503 pass; a wrong value, another status or a transport
// error count.
func TestLiveReaderJudges(t *testing.T) {
	hist := newHistory()
	hist.put("a", 5, []byte("five"))
	r := &liveReader{hist: hist, reads: map[string]int{}, errs: map[string]int{}, unverified: map[string]int{},
		statuses: map[string]map[int]int{"f": {}}, samples: map[string][]string{}}
	r.judge("f", "a", readAnswer{status: 200, body: []byte("five"), revision: "5"})
	r.judge("f", "a", readAnswer{status: 404})
	r.judge("f", "a", readAnswer{status: 503})
	r.judge("f", "a", readAnswer{status: 200, body: []byte("six"), revision: "6"}) // unknown revision
	if r.errs["f"] != 0 || r.unverified["f"] != 1 {
		t.Fatalf("errs %d unverified %d after good answers: %v", r.errs["f"], r.unverified["f"], r.samples["f"])
	}
	r.judge("f", "a", readAnswer{status: 200, body: []byte("fiv"), revision: "5"})
	r.judge("f", "a", readAnswer{status: 200, body: []byte("five"), revision: "x"})
	r.judge("f", "a", readAnswer{status: 502})
	r.judge("f", "a", readAnswer{status: 500})
	r.judge("f", "a", readAnswer{err: fmt.Errorf("reset")})
	if r.errs["f"] != 5 || r.reads["f"] != 9 {
		t.Fatalf("errs %d of %d reads, want 5 of 9: %v", r.errs["f"], r.reads["f"], r.samples["f"])
	}
}
