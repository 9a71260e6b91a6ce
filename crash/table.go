package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	if p == 0.5 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[i]
}

func fmtDur(d time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func (r *result) verdict() string {
	switch {
	case r.err != nil:
		return "ERROR"
	case r.failed():
		return "FAIL"
	default:
		return "ok"
	}
}

// line is the one-line summary printed when a scenario finishes.
func (r *result) line(took time.Duration) string {
	return fmt.Sprintf("%-14s %-6s %s: %d cycles, %d faults, %d divergences, %d orphans, %d reads failed, %d outage errors (of %d live reads), recovery p50 %s max %s, took %v",
		r.scenario, r.store, r.verdict(), r.cycles, r.faults, r.divergences, r.orphans, r.readsFailed, r.outageErrs, r.liveReads,
		fmtDur(percentile(r.recoveries, 0.5), len(r.recoveries)), fmtDur(slices.Max(append([]time.Duration{0}, r.recoveries...)), len(r.recoveries)),
		took.Round(time.Second))
}

// printTable writes the results as a Markdown table.
func printTable(w io.Writer, rows []*result) {
	header := []string{"scenario", "store", "cycles", "faults", "divergences", "orphans", "reads failed", "outage errors", "live reads", "recovery p50", "recovery max", "result"}
	cells := [][]string{header}
	for _, r := range rows {
		cells = append(cells, []string{r.scenario, r.store, fmt.Sprint(r.cycles), fmt.Sprint(r.faults), fmt.Sprint(r.divergences),
			fmt.Sprint(r.orphans), fmt.Sprint(r.readsFailed), fmt.Sprint(r.outageErrs), fmt.Sprint(r.liveReads),
			fmtDur(percentile(r.recoveries, 0.5), len(r.recoveries)),
			fmtDur(slices.Max(append([]time.Duration{0}, r.recoveries...)), len(r.recoveries)), r.verdict()})
	}
	width := make([]int, len(header))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len(s))
		}
	}
	line := func(c []string) {
		var sb strings.Builder
		sb.WriteString("|")
		for i, s := range c {
			sb.WriteString(" " + s + strings.Repeat(" ", width[i]-len(s)) + " |")
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
}
