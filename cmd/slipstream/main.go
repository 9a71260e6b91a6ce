// Command slipstream materializes NATS JetStream KV buckets into local,
// durable, queryable folds. See README.md for the quickstart.
//
// The verbs are cobra commands (spf13/cobra, flags by spf13/pflag): flags
// go before or after the arguments, every verb has --help with its
// arguments and examples, and `slipstream completion bash|zsh|fish|
// powershell` writes a shell's completion script.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
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
// bad config file. They exit 2; every other error exits 1.
var errUsage = errors.New("usage")

// usageError is an error of the caller's. errors.Is(err, errUsage) holds
// for it. withUsage adds the verb's usage line to the message: a bad flag
// or argument, as opposed to a bad config or an unreadable token file.
type usageError struct {
	msg       string
	withUsage bool
}

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == errUsage }

// usageErr is a caller's mistake in a flag's value or a file a flag names:
// exit 2, without the usage line.
func usageErr(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// argsErr is a bad flag or a wrong argument: exit 2, and the message is
// followed by the verb's usage line.
func argsErr(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...), withUsage: true}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the CLI on args and returns the exit code. Errors are printed
// here, once: "slipstream VERB: message", and for a bad flag or argument
// one "usage:" line and where the help is.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(legacyFlags(root, args))
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	who := "slipstream"
	if cmd != nil && cmd != root {
		who = cmd.CommandPath()
	}
	code := exitFailure
	if errors.Is(err, errUsage) {
		code = exitUsage
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "%s: %s\n", who, msg)
	}
	var ue *usageError
	if errors.As(err, &ue) && ue.withUsage {
		if cmd == nil {
			cmd = root
		}
		what := "its flags and examples"
		if cmd.HasAvailableSubCommands() {
			what = "its commands"
		}
		fmt.Fprintf(stderr, "usage: %s\nRun '%s --help' for %s.\n", cmd.UseLine(), cmd.CommandPath(), what)
	}
	return code
}

// newRoot builds the command tree, writing to stdout and stderr.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "slipstream COMMAND [flags] [args]",
		Short: "Local, durable, queryable folds of NATS JetStream KV buckets",
		Long: `slipstream keeps a local, durable, queryable copy (a fold) of a NATS JetStream
Key-Value bucket. 'slipstream run' runs the service; the other verbs read a
running service over its HTTP API, talk to a bucket, or move snapshot artifacts.

Flags go before or after the arguments. Verbs that print data print tables
or text for people, and with --json JSON for scripts: one document, or for
the verbs that list (scan, kv ls, watch) one JSON object per line.

Exit codes: 0 ok, 1 failure, 2 usage or config error.`,
		Example: `  slipstream run --config slipstream.toml
  slipstream kv put config route.a hello
  slipstream scan routes --prefix route.
  slipstream completion bash > /etc/bash_completion.d/slipstream`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Anything that is not a verb is a usage error, with suggestions.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(stderr)
			_ = cmd.Usage()
			return &usageError{} // exit 2, nothing more to say
		},
	}
	// The verbs in the order of the groups below, not sorted.
	cobra.EnableCommandSorting = false
	root.SetUsageTemplate(usageTemplate)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(os.Stdin)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return argsErr("%v", err)
	})
	root.CompletionOptions.HiddenDefaultCmd = false
	root.AddGroup(
		&cobra.Group{ID: "service", Title: "Running the service:"},
		&cobra.Group{ID: "read", Title: "Reading a running service:"},
		&cobra.Group{ID: "artifact", Title: "Snapshot artifacts:"},
		&cobra.Group{ID: "other", Title: "Other commands:"},
	)
	root.SetHelpCommandGroupID("other")
	root.SetCompletionCommandGroupID("other")
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("service", runCmd(), validateCmd(), reloadCmd())
	add("read", statusCmd(), getCmd(), scanCmd(), watchCmd(), verifyCmd(), reconcileCmd())
	add("artifact", exportCmd(), importCmd(), artifactCmd())
	add("other", kvCmd(), conformanceCmd(), versionCmd())
	// cobra's completion command, with a shell that is not one of its
	// subcommands a usage error rather than its help.
	root.InitDefaultCompletionCmd()
	if comp, _, err := root.Find([]string{"completion"}); err == nil && comp != root {
		comp.Use = "completion bash|zsh|fish|powershell"
		comp.Example = `  slipstream completion bash > /etc/bash_completion.d/slipstream
  source <(slipstream completion zsh)
  slipstream completion fish > ~/.config/fish/completions/slipstream.fish`
		comp.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return argsErr("need a shell: bash, zsh, fish or powershell")
			}
			return unknownCommand(cmd, args[0])
		}
		comp.RunE = func(*cobra.Command, []string) error { return nil }
	}
	return root
}

// usageTemplate is cobra's, with one usage line: every command with
// subcommands (slipstream, kv, artifact) says them in its Use.
const usageTemplate = `Usage:
  {{.UseLine}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Flags of {{.Parent.CommandPath}}:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Run '{{.CommandPath}} COMMAND --help' for a command's arguments, flags and examples.{{end}}
`

// unknownCommand is the usage error of an argument that names no verb
// (or no subcommand of cmd), with cobra's suggestions.
func unknownCommand(cmd *cobra.Command, arg string) error {
	msg := fmt.Sprintf("unknown command %q", arg)
	if s := cmd.SuggestionsFor(arg); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return argsErr("%s", msg)
}

// legacyFlags turns a single-dash long flag (-config FILE, as the standard
// flag package took them) into its double-dash form when the verb has a
// flag of that name, so that scripts written for the earlier CLI go on
// working. Arguments after "--" are left alone.
func legacyFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) > 1 && (cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil) {
			out[i] = "-" + a
		}
	}
	return out
}

// exactArgs accepts exactly the arguments named, for the usage message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return argsErr("want %s, got %s", argList(names), gotArgs(args))
		}
		return nil
	}
}

// rangeArgs accepts the first min of names and up to all of them.
func rangeArgs(min int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > len(names) {
			return argsErr("want %s, got %s", argList(names), gotArgs(args))
		}
		return nil
	}
}

func argList(names []string) string {
	if len(names) == 0 {
		return "no arguments"
	}
	return strings.Join(names, " ")
}

func gotArgs(args []string) string {
	switch len(args) {
	case 0:
		return "none"
	case 1:
		return fmt.Sprintf("1 argument (%q)", args[0])
	}
	return fmt.Sprintf("%d arguments (%s)", len(args), strings.Join(quoteAll(args), " "))
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func versionCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Long:  "Print slipstream's version (and with --json, the Go version it was built with).",
		Example: `  slipstream version
  slipstream version --json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"version": version, "go": runtime.Version()})
			}
			fmt.Fprintln(cmd.OutOrStdout(), "slipstream", version)
			return nil
		},
	}
	jsonFlag(c, &asJSON, "print {version, go} as JSON")
	return c
}
