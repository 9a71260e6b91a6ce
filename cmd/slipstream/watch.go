package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/slipstreamkv/slipstream/client"
	"github.com/spf13/cobra"
)

// newAPIClient makes a client.Client of the --api, --token-file and
// --ca-file flags.
func newAPIClient(a *apiClient) (*client.Client, error) {
	if err := a.prepare(); err != nil {
		return nil, err
	}
	opts := []client.Option{client.WithHTTPClient(&http.Client{Transport: a.transport})}
	if a.token != "" {
		opts = append(opts, client.WithToken(a.token))
	}
	c, err := client.New(apiURL(*a.addr, ""), opts...)
	if err != nil {
		return nil, usageErr("--api: %v", err)
	}
	return c, nil
}

// errWatchReset ends a watch the service reset: exit 1.
var errWatchReset = errors.New("the change stream was reset")

// watchCmd prints the changes of a fold as they happen, one line each,
// until SIGINT or SIGTERM (exit 0). A reset (the changes after the
// position cannot be delivered: a rebuild, a position too old) is printed
// to stderr with where the fold is now, and exits 1: read the fold again
// (scan) and watch --from the position that read answered.
func watchCmd() *cobra.Command {
	var (
		prefix, from string
		asJSON       bool
		bookmark     time.Duration
	)
	c := &cobra.Command{
		Use:   "watch FOLD",
		Short: "Print the changes of a fold as they happen",
		Long: `Follow the changes FOLD commits (after its transforms) and print one line each:
"put KEY REV VALUE" and "del KEY REV" (a value with control characters is
quoted, as in scan). With --json, JSON Lines: one {op, key, revision, value or
value_base64, position} per change, where position is the --from to go on
after it. Without --from it starts at the fold's current position; it says on
stderr when it is watching.

It exits 0 on SIGINT or SIGTERM. On a reset (a rebuild, or a position older
than the changes the service keeps) it prints the reason and where the fold is
to stderr and exits 1: read the fold again (scan --json gives a position) and
watch --from the position of that read.`,
		Example: `  slipstream watch routes
  slipstream watch routes --prefix route. --json
  slipstream watch routes --from 2.1041 --json`,
		Args: exactArgs("FOLD"),
	}
	api := apiFlags(c.Flags())
	c.Flags().StringVar(&prefix, "prefix", "", "only keys starting with `P`")
	c.Flags().StringVar(&from, "from", "", "print the changes after this position, `G.C` (GENERATION.CURSOR; default: from now)")
	jsonFlag(c, &asJSON, "print JSON Lines: one {op, key, revision, value or value_base64, position} per change")
	c.Flags().DurationVar(&bookmark, "bookmark", 0, "how long the stream may stay silent before the service says it is alive (100ms to 10m; default the service's, 10s)")
	c.ValidArgsFunction = completeFolds(api, false)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		name, stdout, stderr := args[0], cmd.OutOrStdout(), cmd.ErrOrStderr()
		o := client.WatchOptions{Prefix: prefix, Bookmark: bookmark}
		if from != "" {
			at, err := client.ParsePosition(from)
			if err != nil {
				return usageErr("--from: %v", err)
			}
			o.From = at
		}
		c, err := newAPIClient(api)
		if err != nil {
			return err
		}
		o.OnRetry = func(err error, wait time.Duration) {
			fmt.Fprintf(stderr, "slipstream watch: %v; resuming in %s\n", err, wait.Round(time.Millisecond))
		}

		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		started := false
		for ev, err := range c.Watch(ctx, name, o) {
			if err != nil {
				if ctx.Err() != nil {
					return nil // interrupted: a clean end
				}
				return err
			}
			switch ev.Type {
			case client.EventBookmark:
				if !started {
					started = true
					fmt.Fprintf(stderr, "watching %s (prefix %q) from %s\n", name, prefix, ev.Position)
				}
				continue
			case client.EventReset:
				return fmt.Errorf("%w: %s; the fold is at %s: read it again, then watch --from the position of that read", errWatchReset, ev.Reason, ev.Position)
			}
			var line []byte
			if asJSON {
				line = changeJSON(ev)
			} else {
				line = changeText(ev)
			}
			if _, err := stdout.Write(line); err != nil {
				return err
			}
		}
		return nil
	}
	return c
}

// changeText is a change for people: put KEY REV VALUE, or del KEY REV.
// A value that is not printable text is quoted, a binary one summarized
// (showValue).
func changeText(ev client.Event) []byte {
	if ev.Type == client.EventDelete {
		return fmt.Appendf(nil, "del %s %d\n", showKey(ev.Key), ev.Revision)
	}
	return fmt.Appendf(nil, "put %s %d %s\n", showKey(ev.Key), ev.Revision, showValue(ev.Value))
}

// watchLine is a change for scripts, one JSON object per line.
type watchLine struct {
	Op          string  `json:"op"` // put or delete
	Key         string  `json:"key"`
	Revision    uint64  `json:"revision"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 []byte  `json:"value_base64,omitempty"`
	// Position is the --from to go on after this change.
	Position string `json:"position"`
}

func changeJSON(ev client.Event) []byte {
	l := watchLine{Op: ev.Type.String(), Key: ev.Key, Revision: ev.Revision, Position: ev.Position.String()}
	if ev.Type == client.EventPut {
		if utf8.Valid(ev.Value) {
			v := string(ev.Value)
			l.Value = &v
		} else {
			l.ValueBase64 = ev.Value
		}
	}
	b, _ := json.Marshal(l)
	return append(b, '\n')
}
