package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/slipstreamkv/slipstream/client"
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

// cmdWatch prints the changes of a fold as they happen, one line each,
// until SIGINT or SIGTERM (exit 0). A reset (the changes after the
// position cannot be delivered: a rebuild, a position too old) is printed
// to stderr with where the fold is now, and exits 1: read the fold again
// (scan) and watch --from the position that read answered.
func cmdWatch(args []string, stdout, stderr io.Writer) error {
	fs := flags("watch", stderr)
	api := apiFlags(fs)
	prefix := fs.String("prefix", "", "only keys starting with this")
	from := fs.String("from", "", "print the changes after this position, GENERATION.CURSOR (default: from now)")
	asJSON := fs.Bool("json", false, "print one JSON object per change: op, key, revision, value or value_base64, position")
	bookmark := fs.Duration("bookmark", 0, "how long the stream may stay silent before the service says it is alive (100ms to 10m; default the service's, 10s)")
	// Flags may come before and after FOLD.
	var rest []string
	for {
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rest) != 1 {
		return usageErr("usage: slipstream watch [--api ADDR] [--prefix P] [--from G.C] [--json] FOLD")
	}
	name := rest[0]
	o := client.WatchOptions{Prefix: *prefix, Bookmark: *bookmark}
	if *from != "" {
		at, err := client.ParsePosition(*from)
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
				fmt.Fprintf(stderr, "watching %s (prefix %q) from %s\n", name, *prefix, ev.Position)
			}
			continue
		case client.EventReset:
			return fmt.Errorf("%w: %s; the fold is at %s: read it again, then watch --from the position of that read", errWatchReset, ev.Reason, ev.Position)
		}
		var line []byte
		if *asJSON {
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

// changeText is a change for people: put KEY REV VALUE, or del KEY REV.
// A value that is not printable text is quoted, a binary one summarized.
func changeText(ev client.Event) []byte {
	if ev.Type == client.EventDelete {
		return fmt.Appendf(nil, "del %s %d\n", ev.Key, ev.Revision)
	}
	v := string(ev.Value)
	switch {
	case !utf8.Valid(ev.Value):
		v = "(binary " + strconv.Itoa(len(ev.Value)) + " bytes)"
	case !printable(v):
		v = strconv.Quote(v)
	}
	return fmt.Appendf(nil, "put %s %d %s\n", ev.Key, ev.Revision, v)
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
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
