// Command slipstream materializes NATS JetStream KV buckets into local,
// durable, queryable folds. See README.md for the quickstart.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// errUsage marks errors that are the caller's: bad flags or arguments, or a
// bad config file.
var errUsage = errors.New("usage")

type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"run":         {"run every fold of a config file (--config FILE)", cmdRun},
	"validate":    {"check a config file and exit", cmdValidate},
	"status":      {"show the state of the folds of a running service", cmdStatus},
	"get":         {"read one key of a fold from a running service", cmdGet},
	"scan":        {"list keys of a fold from a running service", cmdScan},
	"kv":          {"put, get, del or ls keys of a bucket on a NATS server", cmdKV},
	"conformance": {"prove a store plugin binary against the store contract (--plugin PATH)", cmdConformance},
	"verify":      {"compare a fold with its bucket; exit 1 on any difference", cmdVerify},
	"reconcile":   {"ask a running fold to repair itself against its bucket", cmdReconcile},
	"export":      {"write an artifact of a running fold to a file or an Object Store series (--to PATH|nats-object://BUCKET/NAME)", cmdExport},
	"import":      {"fill a fold of a stopped service from an artifact (--from PATH|URL|nats-object://BUCKET/NAME)", cmdImport},
	"artifact":    {"inspect PATH|URL|nats-object://BUCKET/NAME: print an artifact's manifest and verify its payload", cmdArtifact},
	"watch":       {"print the changes of a fold as they happen (--prefix P, --from G.C, --json)", cmdWatch},
	"version":     {"print the version", cmdVersion},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "slipstream: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	err := cmd.run(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "slipstream %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "slipstream %s: %v\n", args[0], err)
		return exitFailure
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: slipstream COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'slipstream COMMAND -h' for a command's flags.")
}

// flags returns a flag set that reports errors as usage errors.
func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("slipstream "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args and wraps a bad flag as a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := flags("version", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "slipstream", version)
	return nil
}
