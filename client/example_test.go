package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/slipstreamkv/slipstream/client"
)

func ExampleParsePosition() {
	at, err := client.ParsePosition("3.1042")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(at.Generation, at.Cursor, at)
	// Output: 3 1042 3.1042
}

// Read a key, then follow the changes under a prefix, starting over from a
// fresh listing whenever the service says the stream cannot go on.
func ExampleClient_Watch() {
	ctx := context.Background()
	c, err := client.New("127.0.0.1:7070")
	if err != nil {
		log.Fatal(err)
	}
	e, at, err := c.Get(ctx, "routes", "route.a")
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("route.a is not set at", at)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("route.a = %s (revision %d)\n", e.Value, e.Revision)
	}

	routes := map[string][]byte{}
	for {
		// List, then watch from the position of the listing.
		clear(routes)
		var from client.Position
		for e, err := range c.Scan(ctx, "routes", "route.", client.ScanPosition(&from)) {
			if err != nil {
				log.Fatal(err)
			}
			routes[e.Key] = e.Value
		}
		for ev, err := range c.Watch(ctx, "routes", client.WatchOptions{Prefix: "route.", From: from}) {
			if err != nil {
				log.Fatal(err) // ctx ended, or the fold is unknown
			}
			switch ev.Type {
			case client.EventPut:
				routes[ev.Key] = ev.Value
			case client.EventDelete:
				delete(routes, ev.Key)
			case client.EventReset:
				log.Printf("watch reset (%s); listing again", ev.Reason)
			}
		}
	}
}

// Read your own write: wait until the fold has applied the revision that
// the write to the bucket returned.
func ExampleMinCursor() {
	ctx := context.Background()
	c, err := client.New("http://127.0.0.1:7070")
	if err != nil {
		log.Fatal(err)
	}
	var revision uint64 = 42 // from kv.Put in nats.go
	e, _, err := c.Get(ctx, "routes", "route.a", client.MinCursor(revision, 5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", e.Value)
}
