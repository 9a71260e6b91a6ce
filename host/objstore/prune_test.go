package objstore

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRetained(t *testing.T) {
	now := created0.Add(time.Hour)
	grace := 10 * time.Minute
	cur := ptr(10, "aa", created0)
	if got := retained(nil, now, grace); got != nil {
		t.Errorf("retained(nil) = %v, want nothing", got)
	}
	if got := retained(&cur, now, grace); !slices.Equal(got, []string{cur.Object}) {
		t.Errorf("retained without previous = %v", got)
	}
	cur.Previous = objectName("s", strings.Repeat("e", digestLen))
	for _, c := range []struct {
		published time.Time
		previous  bool
	}{
		{now.Add(-grace - time.Second), false},
		{now.Add(-grace), false},
		{now.Add(-grace + time.Second), true},
		{now.Add(time.Minute), true}, // moved after the pruner read the server's time
	} {
		cur.Published = c.published
		got := retained(&cur, now, grace)
		if !slices.Contains(got, cur.Object) || slices.Contains(got, cur.Previous) != c.previous {
			t.Errorf("moved %v before now: retained %v, want previous kept: %v", now.Sub(c.published), got, c.previous)
		}
	}
}

func TestPrunable(t *testing.T) {
	now := created0.Add(time.Hour)
	grace := 10 * time.Minute
	name := func(c byte) string { return objectName("s", strings.Repeat(string(c), digestLen)) }
	objects := []objectInfo{
		{name('a'), now.Add(-time.Hour)},               // old, pointed
		{name('b'), now.Add(-time.Hour)},               // old, orphan: pruned
		{name('c'), now.Add(-grace)},                   // exactly grace: kept
		{name('d'), now.Add(-grace - time.Nanosecond)}, // just older: pruned
		{name('e'), now.Add(time.Minute)},              // in the future (skew): kept
		{"s/notes.txt", now.Add(-time.Hour)},           // not a payload
		{"t/" + strings.Repeat("f", digestLen) + ".slipsnap", // another series
			now.Add(-time.Hour)},
		{name('1'), now.Add(-time.Hour)}, // old, kept by the caller
	}
	got := prunable("s", objects, []string{name('a'), name('1')}, now, grace)
	if want := []string{name('b'), name('d')}; !slices.Equal(got, want) {
		t.Errorf("prunable = %v, want %v", got, want)
	}
	if got := prunable("s", nil, nil, now, grace); got != nil {
		t.Errorf("prunable of nothing = %v", got)
	}
}
