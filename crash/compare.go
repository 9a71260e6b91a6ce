package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// kvEntry is a live key of the bucket, as NATS reports it.
type kvEntry struct {
	Revision uint64
	Value    []byte
}

// foldEntry is one entry of a fold's scan, as slipstream's HTTP API
// reports it.
type foldEntry struct {
	Key      string
	Revision uint64
	Value    []byte
	// Malformed: the entry had neither "value" nor "value_base64".
	Malformed bool
}

// divergence is one key on which the fold and the bucket disagree.
type divergence struct {
	// Kind is missing, extra, value, revision, value+revision, duplicate,
	// out-of-order or malformed.
	Kind   string
	Key    string
	Bucket *kvEntry
	Fold   *foldEntry
}

func (d divergence) String() string {
	s := fmt.Sprintf("%-14s %q", d.Kind, d.Key)
	if d.Bucket != nil {
		s += fmt.Sprintf(" bucket: rev %d value %s", d.Bucket.Revision, short(d.Bucket.Value))
	} else {
		s += " bucket: absent"
	}
	if d.Fold != nil {
		s += fmt.Sprintf("; fold: rev %d value %s", d.Fold.Revision, short(d.Fold.Value))
	} else {
		s += "; fold: absent"
	}
	return s
}

func short(v []byte) string {
	if len(v) > 40 {
		return strconv.Quote(string(v[:40])) + fmt.Sprintf("...(%d B)", len(v))
	}
	return strconv.Quote(string(v))
}

// compare lists every key on which fold differs from bucket: a key the
// bucket has and the fold lacks (missing), a key the fold has and the
// bucket lacks (extra), a different value or revision, a key the fold lists
// twice (duplicate) or out of order, or an entry without a value
// (malformed). Each key counts once. The result is sorted by key.
func compare(bucket map[string]kvEntry, fold []foldEntry) []divergence {
	var out []divergence
	seen := make(map[string]bool, len(fold))
	prev := ""
	for i := range fold {
		f := &fold[i]
		if seen[f.Key] || (i > 0 && f.Key <= prev) {
			kind := "out-of-order"
			if seen[f.Key] {
				kind = "duplicate"
			}
			out = append(out, divergence{Kind: kind, Key: f.Key, Fold: f})
			seen[f.Key] = true
			continue
		}
		seen[f.Key] = true
		prev = f.Key
		b, ok := bucket[f.Key]
		switch {
		case !ok:
			out = append(out, divergence{Kind: "extra", Key: f.Key, Fold: f})
		case f.Malformed:
			out = append(out, divergence{Kind: "malformed", Key: f.Key, Bucket: &b, Fold: f})
		default:
			valueDiffers := !bytes.Equal(b.Value, f.Value)
			revDiffers := b.Revision != f.Revision
			kind := ""
			switch {
			case valueDiffers && revDiffers:
				kind = "value+revision"
			case valueDiffers:
				kind = "value"
			case revDiffers:
				kind = "revision"
			}
			if kind != "" {
				out = append(out, divergence{Kind: kind, Key: f.Key, Bucket: &b, Fold: f})
			}
		}
	}
	for k, b := range bucket {
		if !seen[k] {
			out = append(out, divergence{Kind: "missing", Key: k, Bucket: &b})
		}
	}
	slices.SortStableFunc(out, func(x, y divergence) int { return strings.Compare(x.Key, y.Key) })
	return out
}

// listBucket reads every live key of the bucket with its value and
// revision straight from NATS: a watcher of the last value per key (no
// history, not updates-only) up to its end-of-initial-values marker.
func listBucket(ctx context.Context, kv jetstream.KeyValue) (map[string]kvEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]kvEntry{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list bucket: %w after %d keys", ctx.Err(), len(out))
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list bucket: watcher closed after %d keys", len(out))
			}
			if e == nil {
				return out, nil
			}
			if e.Operation() == jetstream.KeyValuePut {
				out[e.Key()] = kvEntry{Revision: e.Revision(), Value: bytes.Clone(e.Value())}
			} else {
				delete(out, e.Key())
			}
		}
	}
}

// scanEntry and scanPage are the JSON of GET /v1/folds/NAME/keys.
type scanEntry struct {
	Key         string  `json:"key"`
	Revision    uint64  `json:"revision"`
	Value       *string `json:"value"`
	ValueBase64 []byte  `json:"value_base64"`
}

type scanPage struct {
	Entries []scanEntry `json:"entries"`
	Next    string      `json:"next"`
}

// decodePage reads one page of a scan.
func decodePage(body []byte) ([]foldEntry, string, error) {
	var p scanPage
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", err
	}
	if p.Entries == nil {
		return nil, "", fmt.Errorf("page has no entries array: %.200s", body)
	}
	out := make([]foldEntry, 0, len(p.Entries))
	for _, e := range p.Entries {
		fe := foldEntry{Key: e.Key, Revision: e.Revision}
		switch {
		case e.Value != nil && e.ValueBase64 == nil:
			fe.Value = []byte(*e.Value)
		case e.Value == nil && e.ValueBase64 != nil:
			fe.Value = e.ValueBase64
		default:
			fe.Malformed = true
		}
		out = append(out, fe)
	}
	return out, p.Next, nil
}

// scanLimit is the page size asked of the API (its maximum).
const scanLimit = 10000

// listFold reads every key of the fold through the HTTP API, page by page.
func listFold(ctx context.Context, client *http.Client, api, fold string) ([]foldEntry, error) {
	var out []foldEntry
	after, first := "", true
	for pages := 0; ; pages++ {
		if pages > 1000 {
			return nil, fmt.Errorf("scan of %s: more than 1000 pages", fold)
		}
		q := url.Values{"limit": {strconv.Itoa(scanLimit)}}
		if !first {
			q.Set("after", after)
		}
		u := "http://" + api + "/v1/folds/" + url.PathEscape(fold) + "/keys?" + q.Encode()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("scan of %s: %w", fold, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("scan of %s: %w", fold, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("scan of %s: %s %s", fold, resp.Status, strings.TrimSpace(string(body)))
		}
		entries, next, err := decodePage(body)
		if err != nil {
			return nil, fmt.Errorf("scan of %s: %w", fold, err)
		}
		out = append(out, entries...)
		if next == "" {
			return out, nil
		}
		if !first && next <= after {
			return nil, fmt.Errorf("scan of %s: next %q does not move past %q", fold, next, after)
		}
		after, first = next, false
	}
}

// checkRead judges one read of key made after recovery, against the
// bucket's live keys: a live key must answer 200 with its value and
// revision, any other key 404. It returns "" when the answer is right, else
// what is wrong.
func checkRead(key string, bucket map[string]kvEntry, a readAnswer) string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	b, live := bucket[key]
	if !live {
		if a.status == http.StatusNotFound {
			return ""
		}
		return fmt.Sprintf("deleted key answered %d (want 404): %s", a.status, short(a.body))
	}
	if a.status != http.StatusOK {
		return fmt.Sprintf("live key answered %d (want 200): %s", a.status, short(a.body))
	}
	if !bytes.Equal(a.body, b.Value) {
		return fmt.Sprintf("value %s, want %s", short(a.body), short(b.Value))
	}
	if a.revision != strconv.FormatUint(b.Revision, 10) {
		return fmt.Sprintf("Slipstream-Revision %q, want %d", a.revision, b.Revision)
	}
	return ""
}
