package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDumpLatencies checks the CSV of -latency-dump: one row per put made,
// warm-up included, in order, with its start, latency and revision; each
// phase in a file of its own; nothing written without the flag.
func TestDumpLatencies(t *testing.T) {
	b := &bench{o: &options{}}
	p := newProbe(3)
	for i := range 2 { // put 2 is never made
		p.put(i)
		p.rev[i] = uint64(100 + i)
	}
	p.see(1)
	if err := b.dumpLatencies("off", p); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b.o.latencyDump = dir
	for _, name := range []string{"raw-live", "live-http-pebble"} {
		if err := b.dumpLatencies(name, p); err != nil {
			t.Fatal(err)
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || filepath.Base(files[0]) != "001-raw-live.csv" || filepath.Base(files[1]) != "002-live-http-pebble.csv" {
		t.Fatalf("files %v, want 001-raw-live.csv and 002-live-http-pebble.csv", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || lines[0] != "start_unix_ns,latency_ns,revision" {
		t.Fatalf("got %q, want a header and two rows", lines)
	}
	var prevStart int64
	for i, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) != 3 {
			t.Fatalf("row %q: want 3 fields", line)
		}
		start, err1 := strconv.ParseInt(f[0], 10, 64)
		lat, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || f[2] != strconv.Itoa(100+i) {
			t.Fatalf("row %q: want start, latency and revision %d", line, 100+i)
		}
		if start < p.base.UnixNano() || start < prevStart || lat != int64(p.lat[i]) {
			t.Fatalf("row %q: start before the phase, out of order, or latency not %d", line, p.lat[i])
		}
		prevStart = start
	}
	b.o.latencyDump = filepath.Join(dir, "missing")
	if err := b.dumpLatencies("x", p); err == nil {
		t.Fatal("a dump into a missing directory did not fail")
	}
}
