package main

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/slipstreamkv/slipstream/internal/conformance"
	"github.com/spf13/cobra"
)

func conformanceCmd() *cobra.Command {
	var (
		plugin          string
		verbose, asJSON bool
	)
	c := &cobra.Command{
		Use:   "conformance --plugin PATH",
		Short: "Prove a store plugin binary against the store contract",
		Long: `Start the store plugin binary PATH as slipstream would and run every case of the
store contract against it, printing PASS, FAIL (with what failed) or SKIP (a
capability the store does not declare) for each; exit 1 if any case fails.
-v also prints what each case catches and the plugin's logs of failures.

--json prints a summary instead: {plugin, store, passed, failed, skipped,
cases: [{name, result, elapsed, failures, reason}]}.`,
		Example: `  slipstream conformance --plugin bin/slipstream-store-sqlite
  slipstream conformance --plugin bin/slipstream-store-mine -v
  slipstream conformance --plugin bin/slipstream-store-mine --json | jq .failed`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if plugin == "" {
				return argsErr("--plugin PATH is required")
			}
			if !asJSON {
				if _, failed := conformance.RunCLI(cmd.OutOrStdout(), plugin, verbose); failed > 0 {
					return fmt.Errorf("%s failed %d conformance cases", plugin, failed)
				}
				return nil
			}
			var text bytes.Buffer
			_, failed := conformance.RunCLI(&text, plugin, verbose)
			if err := writeJSON(cmd.OutOrStdout(), conformanceSummary(plugin, text.String())); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%s failed %d conformance cases", plugin, failed)
			}
			return nil
		},
	}
	c.Flags().StringVar(&plugin, "plugin", "", "`PATH` of the store plugin binary to prove")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print what each case catches, and the plugin logs of failures")
	_ = c.MarkFlagFilename("plugin")
	jsonFlag(c, &asJSON, "print a summary as JSON")
	return c
}

// conformanceCase is one case's outcome in conformance --json.
type conformanceCase struct {
	Name     string   `json:"name"`
	Result   string   `json:"result"` // pass, fail or skip
	Elapsed  string   `json:"elapsed,omitempty"`
	Failures []string `json:"failures,omitempty"`
	Reason   string   `json:"reason,omitempty"` // why it was skipped
	Catches  string   `json:"catches,omitempty"`
	Logs     []string `json:"logs,omitempty"`
}

type conformanceResult struct {
	Plugin  string            `json:"plugin"`
	Store   string            `json:"store,omitempty"`
	Passed  int               `json:"passed"`
	Failed  int               `json:"failed"`
	Skipped int               `json:"skipped"`
	Cases   []conformanceCase `json:"cases"`
}

// conformanceSummary reads the report conformance.RunCLI writes for
// people: a "conformance of PLUGIN: STORE" line, then per case
// "PASS  NAME (ELAPSED)", "FAIL  NAME (ELAPSED)" followed by its failures
// indented six spaces (one entry per line here), or "SKIP  NAME: REASON"; with -v, indented
// "catches: " and "log: " lines; a failure to start is "FAIL  start: ...".
func conformanceSummary(plugin, text string) conformanceResult {
	const indent = "      "
	r := conformanceResult{Plugin: plugin, Cases: []conformanceCase{}}
	var cur *conformanceCase
	var lastLog bool // the indented lines that follow continue a log line
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "conformance of "):
			if _, store, ok := strings.Cut(line, ": "); ok {
				r.Store = store
			}
		case strings.HasPrefix(line, "PASS  "), strings.HasPrefix(line, "FAIL  "):
			rest := line[6:]
			c := conformanceCase{Result: strings.ToLower(line[:4]), Name: rest}
			if i := strings.LastIndex(rest, " ("); i > 0 && strings.HasSuffix(rest, ")") {
				c.Name, c.Elapsed = rest[:i], rest[i+2:len(rest)-1]
			} else if name, msg, ok := strings.Cut(rest, ": "); ok && c.Result == "fail" {
				c.Name, c.Failures = name, []string{msg} // a failure to start
			}
			r.Cases = append(r.Cases, c)
			cur = &r.Cases[len(r.Cases)-1]
			if c.Result == "pass" {
				r.Passed++
			} else {
				r.Failed++
			}
		case strings.HasPrefix(line, "SKIP  "):
			name, reason, _ := strings.Cut(line[6:], ": ")
			r.Cases = append(r.Cases, conformanceCase{Name: name, Result: "skip", Reason: reason})
			cur = &r.Cases[len(r.Cases)-1]
			r.Skipped++
		case strings.HasPrefix(line, indent) && cur != nil:
			l := line[len(indent):]
			switch {
			case strings.HasPrefix(l, "catches: "):
				cur.Catches, lastLog = l[len("catches: "):], false
			case strings.HasPrefix(l, "log: "):
				cur.Logs, lastLog = append(cur.Logs, l[len("log: "):]), true
			case lastLog:
				cur.Logs[len(cur.Logs)-1] += "\n" + l
			default:
				cur.Failures = append(cur.Failures, l)
			}
		}
	}
	return r
}
