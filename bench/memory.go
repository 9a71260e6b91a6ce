package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slipstreamkv/slipstream/host/fold"
)

// memoryTarget: host peak RSS at -keys keys is at most this multiple of the
// figure at -mem-small keys.
const memoryTarget = 1.3

// childFlag starts the binary as a memory child. It is not among the
// flags -help lists: only the bench itself passes it.
const childFlag = "-child="

// childMode is the mode named by a leading -child= argument, or "".
func childMode() string {
	if len(os.Args) > 1 {
		if mode, ok := strings.CutPrefix(os.Args[1], childFlag); ok {
			return mode
		}
	}
	return ""
}

// childResult is what a child reports on stdout, as one JSON object.
type childResult struct {
	Elapsed     time.Duration `json:"elapsed_ns"`
	HostHWMKB   int64         `json:"host_vmhwm_kb"`
	PluginHWMKB int64         `json:"plugin_vmhwm_kb"`
	HostCPU     time.Duration `json:"host_cpu_ns"`
	PluginCPU   time.Duration `json:"plugin_cpu_ns"`
	Generation  int           `json:"generation"`
	Keys        uint64        `json:"keys"`
	Records     uint64        `json:"records"` // of the artifact exported or imported
}

// Child modes: a bootstrap or rebuild (memory), an export of a running
// fold to a file, an import of a file into a fold that is not running.
const (
	childMemory = "memory"
	childExport = "export"
	childImport = "import"
)

// runChild runs a fold in this process, which holds no NATS server, and
// reports its peak RSS. The child reads its own VmHWM at its end: the
// parent's rusage view (ru_maxrss) would include the pages of the parent
// the child was forked from. The exit code is 0 on success.
func runChild(mode string, args []string) int {
	fs := flag.NewFlagSet("slipstream-bench child", flag.ContinueOnError)
	url := fs.String("nats", "", "NATS URL")
	bucket := fs.String("bucket", "", "bucket")
	dir := fs.String("dir", "", "fold directory")
	plugin := fs.String("plugin", "", "store plugin binary")
	name := fs.String("backend", "", "backend name")
	scope := fs.String("scope", "", "comma-separated key filters")
	minGen := fs.Int("min-gen", 1, "generation the fold must publish")
	wait := fs.Duration("wait", 5*time.Minute, "longest wait for the fold")
	batch := fs.Int("batch", 0, "fold MaxEntries")
	config := fs.String("store-config", "{}", "store_config JSON")
	file := fs.String("artifact", "", "artifact file: written by an export, read by an import")
	verbose := fs.Bool("v", false, "log the fold's info records")
	debug := fs.Bool("debug", false, "log debug records too, the plugin's among them")
	profile := fs.String("cpuprofile", "", "write a CPU profile of this child to the file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *profile != "" {
		stop, err := startCPUProfile(*profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "slipstream-bench child:", err)
			return 1
		}
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintln(os.Stderr, "slipstream-bench child: cpu profile:", err)
			}
		}()
	}
	spec := foldSpec{
		label: mode, url: *url, bucket: *bucket, dir: *dir, filters: splitList(*scope),
		be: &backend{name: *name, plugin: *plugin}, mode: viaPlugin, logger: newLogger(*verbose, *debug),
		batch: *batch, config: *config,
	}
	var res childResult
	var err error
	switch mode {
	case childMemory:
		res, err = childFold(spec, *minGen, *wait, "")
	case childExport:
		res, err = childFold(spec, *minGen, *wait, *file)
	case childImport:
		res, err = childImportFile(spec, *file, *wait)
	default:
		fmt.Fprintf(os.Stderr, "slipstream-bench child: unknown mode %q\n", mode)
		return 2
	}
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipstream-bench child:", err)
		return 1
	}
	return 0
}

// childFold bootstraps (or rebuilds, or resumes) the fold of spec until it
// publishes generation minGen at the stream's last sequence; then, with
// exportTo set, exports it to that file; then stops it and reports. The
// report's Elapsed is the time to ready, or that of the export.
func childFold(spec foldSpec, minGen int, wait time.Duration, exportTo string) (childResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait+time.Minute)
	defer cancel()
	nc, js, err := connect(spec.url, "slipstream-bench-child")
	if err != nil {
		return childResult{}, err
	}
	_, last, err := streamState(ctx, js, spec.bucket)
	nc.Close()
	if err != nil {
		return childResult{}, err
	}
	r, err := startFold(ctx, spec)
	if err != nil {
		return childResult{}, err
	}
	d, err := r.waitSynced(ctx, last, minGen, wait)
	var st struct {
		gen  int
		keys uint64
	}
	if err == nil {
		s := r.f.Status(ctx)
		st.gen, st.keys = s.Generation, s.Keys
	}
	var records uint64
	if err == nil && exportTo != "" {
		records, d, err = exportFile(ctx, r, exportTo)
	}
	cpu := selfCPU() - r.cpu0
	if err := errors.Join(err, r.stop(time.Minute)); err != nil {
		return childResult{}, err
	}
	hwm, err := procHWM(os.Getpid())
	if err != nil {
		return childResult{}, err
	}
	pcpu, phwm := r.procs.totals()
	return childResult{
		Elapsed: d, HostHWMKB: hwm, PluginHWMKB: phwm, HostCPU: cpu, PluginCPU: pcpu,
		Generation: st.gen, Keys: st.keys, Records: records,
	}, nil
}

// childImportFile imports the artifact file into the fold of spec, which
// is not running (fold.Import, as slipstream import does), and reports the
// time Import took and the records it imported.
func childImportFile(spec foldSpec, file string, wait time.Duration) (childResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	nc, js, err := connect(spec.url, "slipstream-bench-child")
	if err != nil {
		return childResult{}, err
	}
	defer nc.Close()
	src, err := os.Open(file)
	if err != nil {
		return childResult{}, err
	}
	defer src.Close()
	r := &foldRun{spec: spec, reg: prometheus.NewRegistry(), procs: &procTracker{}}
	f := fold.New(r.config(), js)
	cpu0 := selfCPU()
	start := time.Now()
	m, err := f.Import(ctx, src)
	d := time.Since(start)
	if err != nil {
		return childResult{}, fmt.Errorf("import %s: %w", file, err)
	}
	cpu := selfCPU() - cpu0
	hwm, err := procHWM(os.Getpid())
	if err != nil {
		return childResult{}, err
	}
	pcpu, phwm := r.procs.totals()
	return childResult{
		Elapsed: d, HostHWMKB: hwm, PluginHWMKB: phwm, HostCPU: cpu, PluginCPU: pcpu,
		Records: m.Records,
	}, nil
}

// exportFile exports the fold of r to the file path and returns the records
// written and the time the export took.
func exportFile(ctx context.Context, r *foldRun, path string) (uint64, time.Duration, error) {
	out, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	m, err := r.f.Export(ctx, out, "slipstream-bench")
	d := time.Since(start)
	if err := errors.Join(err, out.Close()); err != nil {
		return 0, 0, fmt.Errorf("export to %s: %w", path, err)
	}
	return m.Records, d, nil
}

// child runs this binary as a memory child and returns its report.
func (b *bench) child(ctx context.Context, label, bucket, dir string, be *backend, scope string, minGen int) (childResult, error) {
	return b.runChildProc(ctx, label, childMemory, bucket, dir, be,
		"-scope", scope, "-min-gen", fmt.Sprint(minGen))
}

// runChildProc runs this binary as a child in mode on a fold of bucket in
// dir, with the extra arguments, and returns its report.
func (b *bench) runChildProc(ctx context.Context, label, mode, bucket, dir string, be *backend, extra ...string) (childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return childResult{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, b.o.wait+2*time.Minute)
	defer cancel()
	args := append([]string{childFlag + mode, "-nats", b.url, "-bucket", bucket, "-dir", dir,
		"-plugin", be.plugin, "-backend", be.name, "-wait", b.o.wait.String(),
		"-batch", fmt.Sprint(b.o.batch), "-store-config", b.o.storeConfig[be.name], "-v=" + fmt.Sprint(b.o.verbose), "-debug=" + fmt.Sprint(b.o.debug)}, extra...)
	if b.o.cpuProfile != "" {
		b.children++ // a label repeats from round to round
		args = append(args, "-cpuprofile", fmt.Sprintf("%s.%s.%d", b.o.cpuProfile, label, b.children))
	}
	cmd := exec.CommandContext(cctx, exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return childResult{}, fmt.Errorf("%s child %s: %w", mode, label, err)
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		return childResult{}, fmt.Errorf("%s child %s: report %q: %w", mode, label, out, err)
	}
	b.logf("  %-18s %8v  host VmHWM %s, plugin VmHWM %s, host CPU %v, plugin CPU %v, generation %d, %d keys, %d records",
		label, res.Elapsed.Round(time.Millisecond), fmtKB(res.HostHWMKB), fmtKB(res.PluginHWMKB),
		res.HostCPU.Round(time.Millisecond), res.PluginCPU.Round(time.Millisecond), res.Generation, res.Keys, res.Records)
	return res, nil
}

// memoryReference measures the host's peak RSS of a bootstrap of
// -mem-small keys in a child, a reference of the memory rows, and adds it
// to b.memRefs (the first call fills the small bucket).
func (b *bench) memoryReference(ctx context.Context) (childResult, error) {
	be := b.backends[0]
	if len(b.memRefs) == 0 {
		if err := b.fill(ctx, bucketSmall, b.o.memSmall); err != nil {
			return childResult{}, err
		}
		b.logf("memory: fold in a child process, %s plugin", be.name)
	}
	dir := filepath.Join(b.dir, "folds", "mem-small")
	small, err := b.child(ctx, "memory-small", bucketSmall, dir, be, "", 1)
	if err != nil {
		return childResult{}, err
	}
	b.memRefs = append(b.memRefs, small)
	return small, os.RemoveAll(dir)
}

// hwms are the host peak RSS of rs, in KiB.
func hwms(rs []childResult) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = float64(r.HostHWMKB)
	}
	return out
}

func kbOf(kb float64) string { return fmt.Sprintf("%.1f", kb/1024) }

// memoryRefRow adds the row of the memory references measured.
func (b *bench) memoryRefRow() {
	if len(b.memRefs) == 0 {
		return
	}
	m, sp := medSpread(hwms(b.memRefs), kbOf)
	// First among the memory rows (the table keeps the order within a
	// group).
	b.rows = append([]row{{
		group: groupMemory,
		scenario: fmt.Sprintf("host peak RSS (VmHWM), bootstrap %s keys → %s plugin: the reference",
			fmtCount(b.o.memSmall), b.backends[0].name),
		value: fmtKB(int64(m)) + sp, baseline: "—", ratio: "—", target: "—", result: "—",
	}}, b.rows...)
}

// memoryRow adds a memory row: the median host peak RSS of res against
// the median of the references. The ratio's range pairs each run with the
// reference measured in its round when there is one for each, else with
// the references' median.
func (b *bench) memoryRow(what string, res []childResult, refs []childResult) {
	got, ref := hwms(res), hwms(refs)
	if len(ref) != len(got) {
		ref = make([]float64, len(got))
		for i := range ref {
			ref[i] = medianOf(hwms(b.memRefs))
		}
		refs = b.memRefs
	}
	ratio := medianOf(got) / medianOf(hwms(refs))
	m, sp := medSpread(got, kbOf)
	rm, rsp := medSpread(hwms(refs), kbOf)
	b.add(row{
		group:    groupMemory,
		scenario: "host peak RSS (VmHWM), " + what,
		value:    fmtKB(int64(m)) + sp, baseline: fmtKB(int64(rm)) + rsp + fmt.Sprintf(" (%s keys)", fmtCount(b.o.memSmall)),
		ratio:  ratioOf(ratio) + rangeOf(pairwise(got, ref, div), ratioOf),
		target: fmt.Sprintf("≤ %.1f×", memoryTarget), result: verdict(ratio <= memoryTarget),
	})
}

// memory measures the host's peak RSS in -runs rounds of: a bootstrap of
// -mem-small keys (the reference), one of -keys keys, and a rebuild of
// that fold into a shadow generation (the scope changes from everything
// to ">", the same keys), each with the fold in a child process and NATS
// in this one. The artifact group adds the rows of an export and an
// import.
func (b *bench) memory(ctx context.Context) error {
	be := b.backends[0]
	var refs, large, rebuild []childResult
	for round := 1; round <= b.o.runs; round++ {
		b.logf("memory round %d of %d", round, b.o.runs)
		ref, err := b.memoryReference(ctx)
		if err != nil {
			return err
		}
		largeDir := filepath.Join(b.dir, "folds", "mem-large")
		l, err := b.child(ctx, "memory-large", bucketMain, largeDir, be, "", 1)
		if err != nil {
			return err
		}
		rb, err := b.child(ctx, "memory-rebuild", bucketMain, largeDir, be, ">", l.Generation+1)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(largeDir); err != nil {
			return err
		}
		refs, large, rebuild = append(refs, ref), append(large, l), append(rebuild, rb)
	}
	b.memoryRow(fmt.Sprintf("bootstrap %s keys", fmtCount(b.o.keys)), large, refs)
	b.memoryRow(fmt.Sprintf("rebuild of %s keys into a shadow (scope changed; old generation open)", fmtCount(b.o.keys)), rebuild, refs)
	return nil
}
