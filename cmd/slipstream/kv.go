package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const kvUsage = `usage: slipstream kv [--server URL] [--create] put BUCKET KEY VALUE|-
       slipstream kv [--server URL] get BUCKET KEY
       slipstream kv [--server URL] del BUCKET KEY
       slipstream kv [--server URL] ls BUCKET`

func cmdKV(args []string, stdout, stderr io.Writer) error {
	fs := flags("kv", stderr)
	server := fs.String("server", natsDefault, "NATS server URL (user:password@ allowed)")
	creds := fs.String("creds", "", "NATS credentials file")
	create := fs.Bool("create", false, "put: create the bucket if it does not exist")
	fs.Usage = func() { fmt.Fprintln(stderr, kvUsage); fs.PrintDefaults() }
	if err := parse(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) < 2 {
		return usageErr("need an operation and a bucket\n%s", kvUsage)
	}
	op, bucket := a[0], a[1]
	want := map[string]int{"put": 4, "get": 3, "del": 3, "ls": 2}
	n, ok := want[op]
	if !ok {
		return usageErr("unknown operation %q\n%s", op, kvUsage)
	}
	if len(a) != n {
		return usageErr("%s takes %d arguments\n%s", op, n-1, kvUsage)
	}
	nc, js, err := dial(*server, *creds)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && op == "put" && *create {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket})
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("bucket %s does not exist (kv put --create makes it)", bucket)
		}
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	switch op {
	case "put":
		value := []byte(a[3])
		if a[3] == "-" {
			if value, err = io.ReadAll(os.Stdin); err != nil {
				return err
			}
		}
		rev, err := kv.Put(ctx, a[2], value)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s revision %d\n", a[2], rev)
	case "get":
		e, err := kv.Get(ctx, a[2])
		if err != nil {
			return fmt.Errorf("%s: %w", a[2], err)
		}
		_, err = stdout.Write(append(e.Value(), '\n'))
		return err
	case "del":
		if err := kv.Delete(ctx, a[2]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s deleted\n", a[2])
	case "ls":
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			return err
		}
		for k := range lister.Keys() {
			fmt.Fprintln(stdout, k)
		}
	}
	return nil
}

// dial connects the CLI to a NATS server, with a credentials file when
// creds is set.
func dial(server, creds string) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("slipstream-cli"), nats.Timeout(5 * time.Second)}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(server, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", server, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
