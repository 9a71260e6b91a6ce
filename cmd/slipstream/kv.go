package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

// kvFlags are the flags of kv and its operations. --server, --creds and
// --json come before or after the operation; so does --create, which only
// put uses.
type kvFlags struct {
	server, creds  string
	create, asJSON bool
}

func kvCmd() *cobra.Command {
	f := &kvFlags{}
	c := &cobra.Command{
		Use:   "kv put|get|del|ls BUCKET [KEY [VALUE]]",
		Short: "Put, get, delete or list keys of a bucket on a NATS server",
		Long: `Talk to a NATS JetStream Key-Value bucket directly (not through slipstream), so
that the quickstart needs no other tool. --server is the NATS server (the
embedded server of config.example.toml by default); --creds a credentials file.

--json prints one object per operation ({bucket, key, revision, ...}); kv ls
--json prints JSON Lines, one {bucket, key} per key.`,
		Example: `  slipstream kv put config route.a hello
  slipstream kv put config route.a hello --server nats://nats1:4222
  echo -n hello | slipstream kv put config route.b -
  slipstream kv get config route.a --json
  slipstream kv ls config`,
		// An operation that is not one of the subcommands is a usage error.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return argsErr("need an operation: put, get, del or ls")
			}
			return unknownCommand(cmd, args[0])
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	pf := c.PersistentFlags()
	pf.StringVar(&f.server, "server", natsDefault, "NATS server `URL` (user:password@ allowed)")
	pf.StringVar(&f.creds, "creds", "", "NATS credentials `FILE`")
	pf.BoolVar(&f.asJSON, "json", false, "print JSON (kv ls: JSON Lines)")
	// kv --create put ... as well as kv put --create ...
	pf.BoolVar(&f.create, "create", false, "put: create the bucket if it does not exist")
	_ = pf.MarkHidden("create")

	put := &cobra.Command{
		Use:   "put BUCKET KEY VALUE|-",
		Short: "Write a key (VALUE - reads the value from stdin)",
		Long: `Write VALUE to KEY in BUCKET and print the revision the bucket gave it. A VALUE
of - reads the value from stdin. --create makes the bucket (with the server's
defaults) if it does not exist. A VALUE that starts with a dash follows --.`,
		Example: `  slipstream kv put config route.a hello
  slipstream kv put config route.a hello --server nats://127.0.0.1:4222 --create
  slipstream kv put config route.cfg - < route.json
  slipstream kv put config route.neg -- -1`,
		Args: exactArgs("BUCKET", "KEY", "VALUE|-"),
		RunE: func(cmd *cobra.Command, a []string) error {
			value := []byte(a[2])
			if a[2] == "-" {
				var err error
				if value, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			return f.with(a[0], true, func(ctx context.Context, kv jetstream.KeyValue) error {
				rev, err := kv.Put(ctx, a[1], value)
				if err != nil {
					return err
				}
				if f.asJSON {
					return writeJSON(cmd.OutOrStdout(), entryJSON{Bucket: a[0], Key: a[1], Revision: rev})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s revision %d\n", a[1], rev)
				return nil
			})
		},
	}
	put.Flags().BoolVar(&f.create, "create", false, "create the bucket if it does not exist")

	get := &cobra.Command{
		Use:   "get BUCKET KEY",
		Short: "Print a key's value",
		Long: `Print the value of KEY in BUCKET, followed by a newline. --json prints
{bucket, key, revision, value (or value_base64), created} instead.`,
		Example: `  slipstream kv get config route.a
  slipstream kv get config route.a --json`,
		Args: exactArgs("BUCKET", "KEY"),
		RunE: func(cmd *cobra.Command, a []string) error {
			return f.with(a[0], false, func(ctx context.Context, kv jetstream.KeyValue) error {
				e, err := kv.Get(ctx, a[1])
				if err != nil {
					return fmt.Errorf("%s: %w", a[1], err)
				}
				if f.asJSON {
					j := newEntryJSON(e.Key(), e.Revision(), e.Value())
					j.Bucket = a[0]
					return writeJSON(cmd.OutOrStdout(), struct {
						entryJSON
						Created time.Time `json:"created"`
					}{j, e.Created().UTC()})
				}
				_, err = cmd.OutOrStdout().Write(append(e.Value(), '\n'))
				return err
			})
		},
	}

	del := &cobra.Command{
		Use:   "del BUCKET KEY",
		Short: "Delete a key",
		Long:  `Delete KEY from BUCKET (a delete marker: watchers and folds see the delete).`,
		Example: `  slipstream kv del config route.a
  slipstream kv del config route.a --json`,
		Args: exactArgs("BUCKET", "KEY"),
		RunE: func(cmd *cobra.Command, a []string) error {
			return f.with(a[0], false, func(ctx context.Context, kv jetstream.KeyValue) error {
				if err := kv.Delete(ctx, a[1]); err != nil {
					return err
				}
				if f.asJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"bucket": a[0], "key": a[1], "deleted": true})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", a[1])
				return nil
			})
		},
	}

	ls := &cobra.Command{
		Use:   "ls BUCKET",
		Short: "List the keys of a bucket",
		Long:  `List the live keys of BUCKET, one a line; --json prints one {bucket, key} per line.`,
		Example: `  slipstream kv ls config
  slipstream kv ls config --json`,
		Args: exactArgs("BUCKET"),
		RunE: func(cmd *cobra.Command, a []string) error {
			return f.with(a[0], false, func(ctx context.Context, kv jetstream.KeyValue) error {
				lister, err := kv.ListKeys(ctx)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				for k := range lister.Keys() {
					if f.asJSON {
						if err := writeJSONLine(out, map[string]string{"bucket": a[0], "key": k}); err != nil {
							return err
						}
					} else {
						fmt.Fprintln(out, k)
					}
				}
				return nil
			})
		},
	}
	c.AddCommand(put, get, del, ls)
	return c
}

// with connects to the server, opens bucket (creating it for a put with
// --create) and calls do with it.
func (f *kvFlags) with(bucket string, isPut bool, do func(context.Context, jetstream.KeyValue) error) error {
	nc, js, err := dial(f.server, f.creds)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && isPut && f.create {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket})
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("bucket %s does not exist (kv put --create makes it)", bucket)
		}
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	return do(ctx, kv)
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
