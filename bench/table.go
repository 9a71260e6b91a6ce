package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// The table's groups, in the order.
const (
	groupBootstrap = iota + 1
	groupLive
	groupResume
	groupMemory
	groupBoundary
	groupReads
	groupArtifact
	groupChanges
)

var groupNames = map[int]string{
	groupBootstrap: "bootstrap", groupLive: "live follow", groupResume: "resume",
	groupMemory: "memory", groupBoundary: "plugin boundary", groupReads: "reads", groupArtifact: "artifact",
	groupChanges: "changes",
}

// row is one line of the table.
type row struct {
	group    int
	scenario string
	value    string // slipstream's figure
	baseline string // the baseline's figure, measured in the same run
	ratio    string
	target   string
	result   string // met, MISSED (perhaps saying which target), or — when there is no target
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

// printTable writes the header and the table, as Markdown.
func (b *bench) printTable(w io.Writer, took time.Duration) {
	o := b.o
	host, _ := os.Hostname()
	fmt.Fprintf(w, "slipstream benchmarks, %s, host %s, run took %v\n", time.Now().Format("2006-01-02 15:04 MST"), host, took.Round(time.Second))
	fmt.Fprintf(w, "machine: %s; load average %s at the start, %s at the end\n", machine(), b.loadStart, loadAverage())
	fmt.Fprintf(w, "command: %s\n", strings.Join(os.Args, " "))
	fmt.Fprintf(w, "workload: %s keys of 39 B, values of %d B random alphanumerics, History 1, file storage, embedded nats-server over loopback TCP\n",
		fmtCount(o.keys), valueLen)
	fmt.Fprintf(w, "runs: bootstrap rounds %d of -runs %d (-budget %v), other rows %d, exports and imports %d; a cell's [low–high, n=N] is the range of its runs, a ratio's [low–high] that of the runs' own ratios\n\n",
		b.rounds, o.runs, o.budget, o.runs, b.artifactRuns())
	rows := slices.Clone(b.rows)
	slices.SortStableFunc(rows, func(x, y row) int { return x.group - y.group })
	header := []string{"#", "scenario", "slipstream", "baseline (same run)", "ratio", "target", "result"}
	cells := [][]string{header}
	for _, r := range rows {
		cells = append(cells, []string{fmt.Sprintf("%d %s", r.group, groupNames[r.group]), r.scenario, r.value, r.baseline, r.ratio, r.target, r.result})
	}
	width := make([]int, len(header))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	line := func(c []string) {
		var sb strings.Builder
		sb.WriteString("|")
		for i, s := range c {
			sb.WriteString(" " + s + strings.Repeat(" ", width[i]-utf8.RuneCountInString(s)) + " |")
		}
		fmt.Fprintln(w, sb.String())
	}
	line(cells[0])
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, c := range cells[1:] {
		line(c)
	}
	missed := 0
	for _, r := range rows {
		if strings.HasPrefix(r.result, "MISSED") {
			missed++
		}
	}
	fmt.Fprintf(w, "\n%d rows, %d targets missed\n", len(rows), missed)
}

// median of ds (ds is not modified).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func fmtRate(perSec float64, unit string) string {
	switch {
	case perSec >= 1e6:
		return fmt.Sprintf("%.2fM %s", perSec/1e6, unit)
	case perSec >= 1e3:
		return fmt.Sprintf("%.1fk %s", perSec/1e3, unit)
	}
	return fmt.Sprintf("%.0f %s", perSec, unit)
}

func fmtCount(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return fmt.Sprintf("%dM", n/1e6)
	case n >= 1e3 && n%1e3 == 0:
		return fmt.Sprintf("%dk", n/1e3)
	}
	return fmt.Sprint(n)
}

func fmtPct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// fmtDelta is a signed difference in milliseconds.
func fmtDelta(d time.Duration) string {
	if d < 0 {
		return "−" + fmtMs(-d)
	}
	return "+" + fmtMs(d)
}

func fmtDur(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmtMs(d)
}

func fmtKB(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

// A row that decides a target is the median of its runs, each run of
// slipstream paired with a run of its baseline just before or after it.
// The cells print the median and, in brackets, the range of the runs and
// their number: "73.4k keys/s [70.1k–75.0k, n=3]"; the ratio column the
// ratio (or difference) of the two medians and, in brackets, the range of
// the runs' own ratios (or differences): "27% [25–29%]".

// medianOf is the median of vs (the upper one of an even count); vs is not
// modified.
func medianOf(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

// spread is " [low–high, n=N]" of vs in format, or " [n=1]" for one run.
func spread(vs []float64, format func(float64) string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return " [n=1]"
	}
	return fmt.Sprintf(" [%s–%s, n=%d]", format(slices.Min(vs)), format(slices.Max(vs)), len(vs))
}

// rangeOf is " [low–high]" of vs in format, or "" for fewer than two.
func rangeOf(vs []float64, format func(float64) string) string {
	if len(vs) < 2 {
		return ""
	}
	return fmt.Sprintf(" [%s–%s]", format(slices.Min(vs)), format(slices.Max(vs)))
}

// medSpread is the median of vs and its spread in format.
func medSpread(vs []float64, format func(float64) string) (float64, string) {
	return medianOf(vs), spread(vs, format)
}

// Formats of the bounds in brackets: the unit is the cell's.
func rateOf(f float64) string { return strings.TrimSpace(fmtRate(f, "")) }
func pctOf(f float64) string  { return fmt.Sprintf("%.0f%%", 100*f) }
func ratioOf(f float64) string {
	return fmt.Sprintf("%.2f×", f)
}

// secondsOf formats durations given in nanoseconds as fmtDur does,
// without the unit when it is ms (the cell says it).
func secondsOf(ns float64) string {
	return strings.TrimSuffix(fmtDur(time.Duration(ns)), " ms")
}

// floats converts durations to nanoseconds.
func floats(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d)
	}
	return out
}

// pairwise applies fn to the i-th elements of a and b, for as many as both
// have.
func pairwise(a, b []float64, fn func(x, y float64) float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		out[i] = fn(a[i], b[i])
	}
	return out
}

func div(x, y float64) float64 { return x / y }
func sub(x, y float64) float64 { return x - y }
