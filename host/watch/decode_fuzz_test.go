package watch

import (
	"bytes"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/slipstreamkv/slipstream/sdk"
)

// FuzzDecode feeds decode what a stream message brings from outside: its
// subject, its header block as it comes off the wire (decoded as the client
// decodes it), and its data; bucket names the fold's bucket.
//
// A message is an update for the bucket only if its subject is the bucket's
// prefix followed by a key: anything else (another bucket, a subject that
// merely starts like the prefix, the prefix alone) is skipped. An update's
// key is the rest of the subject, its revision and pending count are the
// message's, its op is one of the three defined, chosen by KV-Operation or
// else by a limit marker's reason, and only a put carries the data.
func FuzzDecode(f *testing.F) {
	hdr := func(lines ...string) []byte {
		b := []byte("NATS/1.0\r\n")
		for _, l := range lines {
			b = append(b, l+"\r\n"...)
		}
		return append(b, "\r\n"...)
	}
	for _, s := range []struct {
		bucket, subject string
		header, data    []byte
	}{
		{"b", "$KV.b.k", nil, []byte("v")},
		{"b", "$KV.b.a.b.c", nil, nil},
		{"b", "$KV.b.k", hdr(), []byte("v")}, // a header block with no headers
		{"b", "$KV.b.k", hdr("KV-Operation: DEL"), []byte("left over")},
		{"b", "$KV.b.k", hdr("KV-Operation: PURGE", "Nats-Rollup: sub"), nil},
		{"b", "$KV.b.k", hdr("KV-Operation: del"), []byte("v")}, // case matters: a put
		{"b", "$KV.b.k", hdr("kv-operation: DEL"), []byte("v")},
		{"b", "$KV.b.k", hdr("KV-Operation: PUT", "Nats-Marker-Reason: Remove"), nil},
		{"b", "$KV.b.k", hdr("Nats-Marker-Reason: MaxAge", "Nats-TTL: 1s"), nil},
		{"b", "$KV.b.k", hdr("Nats-Marker-Reason: Purge"), nil},
		{"b", "$KV.b.k", hdr("Nats-Marker-Reason: Remove"), nil},
		{"b", "$KV.b.k", hdr("Nats-Marker-Reason: Other"), []byte("v")},
		{"b", "$KV.b.k", hdr("KV-Operation: DEL", "KV-Operation: PURGE"), nil},
		{"b", "$KV.b.k", []byte("NATS/1.0 100 Idle Heartbeat\r\n\r\n"), nil},
		{"b", "$KV.b.k", []byte("NATS/1.0\r\nKV-Operation DEL\r\n\r\n"), nil}, // does not decode
		{"b", "$KV.bb.k", nil, []byte("v")},                                   // another bucket
		{"b", "$KV.c.k", hdr("KV-Operation: DEL"), nil},
		{"b", "$KV.b", nil, nil},
		{"b", "$KV.b.", nil, []byte("v")}, // the prefix alone: no key
		{"b", "", nil, nil},
		{"b", "KV.b.k", nil, nil},
		{"", "$KV..k", nil, nil},
	} {
		f.Add(s.bucket, s.subject, s.header, s.data, uint64(42), uint64(3))
	}
	f.Fuzz(func(t *testing.T, bucket, subject string, header, data []byte, seq, pending uint64) {
		var h nats.Header
		if len(header) > 0 {
			var err error
			if h, err = nats.DecodeHeadersMsg(header); err != nil {
				h = nil // the client delivers such a message without headers
			}
		}
		prefix := "$KV." + bucket + "."
		dataBefore := bytes.Clone(data)
		u, ok := decode(prefix, subject, h, data, seq, pending)
		if !bytes.Equal(data, dataBefore) {
			t.Fatal("decode changed the data")
		}
		key, inBucket := subject[min(len(prefix), len(subject)):], len(subject) >= len(prefix) && subject[:len(prefix)] == prefix
		if !ok {
			if inBucket && key != "" {
				t.Fatalf("skipped %q, a key %q of bucket %q", subject, key, bucket)
			}
			if u.Op != 0 || u.Key != nil || u.Value != nil || u.Revision != 0 || u.Pending != 0 {
				t.Fatalf("skipped message came with %+v", u)
			}
			return
		}
		if !inBucket {
			t.Fatalf("decoded %q, outside bucket %q, as %+v", subject, bucket, u)
		}
		if len(u.Key) == 0 || string(u.Key) != key {
			t.Fatalf("key %q from subject %q under prefix %q", u.Key, subject, prefix)
		}
		if u.Revision != seq || u.Pending != pending {
			t.Fatalf("revision %d pending %d from a message at %d with %d pending", u.Revision, u.Pending, seq, pending)
		}
		if want := wantOp(h); u.Op != want {
			t.Fatalf("op %d from headers %v, want %d", u.Op, h, want)
		}
		switch u.Op {
		case sdk.OpPut:
			if !bytes.Equal(u.Value, data) {
				t.Fatalf("put of %q from data %q", u.Value, data)
			}
		case sdk.OpDelete, sdk.OpPurge:
			if u.Value != nil {
				t.Fatalf("op %d carries value %q", u.Op, u.Value)
			}
		default:
			t.Fatalf("undefined op %d", u.Op)
		}
	})
}

// wantOp is the op a message's headers make, as the KV and the server's
// limit markers define it: the first KV-Operation header, DEL or PURGE,
// else the first Nats-Marker-Reason, with Remove a delete and MaxAge or
// Purge a purge, else a put. Header names and values are case-sensitive.
func wantOp(h nats.Header) sdk.Op {
	first := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	ops := map[string]sdk.Op{"DEL": sdk.OpDelete, "PURGE": sdk.OpPurge}
	if op, ok := ops[first("KV-Operation")]; ok {
		return op
	}
	reasons := map[string]sdk.Op{"Remove": sdk.OpDelete, "MaxAge": sdk.OpPurge, "Purge": sdk.OpPurge}
	if op, ok := reasons[first("Nats-Marker-Reason")]; ok {
		return op
	}
	return sdk.OpPut
}
