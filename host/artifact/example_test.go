package artifact_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/slipstreamkv/slipstream/host/artifact"
)

func Example() {
	var file bytes.Buffer
	w, err := artifact.NewWriter(&file, artifact.Manifest{
		Bucket:        "orders",
		Stream:        "KV_orders",
		StreamCreated: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		Filters:       []string{"eu.>"},
		Cursor:        42,
		Producer:      "example",
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range []artifact.Record{
		{Key: []byte("eu.1001"), Value: []byte(`{"state":"paid"}`), Revision: 17},
		{Key: []byte("eu.1002"), Value: []byte(`{"state":"shipped"}`), Revision: 42},
		{Key: []byte("eu.1003"), Value: nil, Revision: 30},
	} {
		if err := w.Add(r); err != nil {
			log.Fatal(err)
		}
	}
	written, err := w.Close()
	if err != nil {
		log.Fatal(err)
	}

	r, err := artifact.NewReader(&file)
	if err != nil {
		log.Fatal(err)
	}
	// The identity is known before the first record: refuse a foreign
	// artifact here.
	m := r.Manifest()
	fmt.Printf("%s (%s) scope %v at cursor %d\n", m.Bucket, m.Stream, m.Filters, m.Cursor)
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s = %q @%d\n", rec.Key, rec.Value, rec.Revision)
	}
	// Only after io.EOF is the artifact known complete.
	m = r.Manifest()
	fmt.Println(m.Records, "records,", m.Bytes, "bytes, hash matches:", m.ContentHash == written.ContentHash)
	// Output:
	// orders (KV_orders) scope [eu.>] at cursor 42
	// eu.1001 = "{\"state\":\"paid\"}" @17
	// eu.1002 = "{\"state\":\"shipped\"}" @42
	// eu.1003 = "" @30
	// 3 records, 56 bytes, hash matches: true
}
