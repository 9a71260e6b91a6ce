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

// childResult is what a memory child reports on stdout, as one JSON object.
type childResult struct {
	Elapsed     time.Duration `json:"elapsed_ns"`
	HostHWMKB   int64         `json:"host_vmhwm_kb"`
	PluginHWMKB int64         `json:"plugin_vmhwm_kb"`
	HostCPU     time.Duration `json:"host_cpu_ns"`
	PluginCPU   time.Duration `json:"plugin_cpu_ns"`
	Generation  int           `json:"generation"`
	Keys        uint64        `json:"keys"`
}

// runChild runs a fold in this process, which holds no NATS server, until it
// is ready, and reports its peak RSS. The child reads its own VmHWM at its
// end: the parent's rusage view (ru_maxrss) would include the pages of the
// parent the child was forked from. The exit code is 0 on success.
func runChild(mode string, args []string) int {
	if mode != "memory" {
		fmt.Fprintf(os.Stderr, "slipstream-bench child: unknown mode %q\n", mode)
		return 2
	}
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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	spec := foldSpec{
		label: "memory", url: *url, bucket: *bucket, dir: *dir, filters: splitList(*scope),
		be: &backend{name: *name, plugin: *plugin}, mode: viaPlugin, logger: newLogger(false),
		batch: *batch, config: *config,
	}
	res, err := childFold(spec, *minGen, *wait)
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipstream-bench child:", err)
		return 1
	}
	return 0
}

// childFold bootstraps (or rebuilds) the fold of spec until it publishes
// generation minGen at the stream's last sequence, then stops it and
// reports.
func childFold(spec foldSpec, minGen int, wait time.Duration) (childResult, error) {
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
		Generation: st.gen, Keys: st.keys,
	}, nil
}

// child runs this binary as a memory child and returns its report.
func (b *bench) child(ctx context.Context, label, bucket, dir string, be *backend, scope string, minGen int) (childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return childResult{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, b.o.wait+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, exe, childFlag+"memory", "-nats", b.url, "-bucket", bucket, "-dir", dir,
		"-plugin", be.plugin, "-backend", be.name, "-scope", scope, "-min-gen", fmt.Sprint(minGen),
		"-wait", b.o.wait.String(), "-batch", fmt.Sprint(b.o.batch), "-store-config", b.o.storeConfig[be.name])
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return childResult{}, fmt.Errorf("memory child %s: %w", label, err)
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		return childResult{}, fmt.Errorf("memory child %s: report %q: %w", label, out, err)
	}
	b.logf("  %-18s %8v  host VmHWM %s, plugin VmHWM %s, host CPU %v, plugin CPU %v, generation %d, %d keys",
		label, res.Elapsed.Round(time.Millisecond), fmtKB(res.HostHWMKB), fmtKB(res.PluginHWMKB),
		res.HostCPU.Round(time.Millisecond), res.PluginCPU.Round(time.Millisecond), res.Generation, res.Keys)
	return res, nil
}

// memory measures the host's peak RSS: a bootstrap of -mem-small keys (the
// reference), one of -keys keys, and a rebuild of that fold into a shadow
// generation (the scope changes from everything to ">", the same keys),
// each with the fold in a child process and NATS in this one.
func (b *bench) memory(ctx context.Context) error {
	be := b.backends[0]
	if err := b.fill(ctx, bucketSmall, b.o.memSmall); err != nil {
		return err
	}
	b.logf("memory: fold in a child process, %s plugin", be.name)
	small, err := b.child(ctx, "memory-small", bucketSmall, filepath.Join(b.dir, "folds", "mem-small"), be, "", 1)
	if err != nil {
		return err
	}
	largeDir := filepath.Join(b.dir, "folds", "mem-large")
	large, err := b.child(ctx, "memory-large", bucketMain, largeDir, be, "", 1)
	if err != nil {
		return err
	}
	rebuild, err := b.child(ctx, "memory-rebuild", bucketMain, largeDir, be, ">", large.Generation+1)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(largeDir); err != nil {
		return err
	}
	ref := fmtKB(small.HostHWMKB) + fmt.Sprintf(" (%s keys)", fmtCount(b.o.memSmall))
	b.add(row{
		group:    groupMemory,
		scenario: fmt.Sprintf("host peak RSS (VmHWM), bootstrap %s keys → %s plugin: the reference", fmtCount(b.o.memSmall), be.name),
		value:    fmtKB(small.HostHWMKB), baseline: "—", ratio: "—", target: "—", result: "—",
	})
	for _, m := range []struct {
		what string
		res  childResult
	}{
		{fmt.Sprintf("bootstrap %s keys", fmtCount(b.o.keys)), large},
		{fmt.Sprintf("rebuild of %s keys into a shadow (scope changed; old generation open)", fmtCount(b.o.keys)), rebuild},
	} {
		ratio := float64(m.res.HostHWMKB) / float64(small.HostHWMKB)
		b.add(row{
			group:    groupMemory,
			scenario: "host peak RSS (VmHWM), " + m.what,
			value:    fmtKB(m.res.HostHWMKB), baseline: ref,
			ratio: fmt.Sprintf("%.2f×", ratio), target: fmt.Sprintf("≤ %.1f×", memoryTarget), result: verdict(ratio <= memoryTarget),
		})
	}
	b.add(row{
		group:    groupMemory,
		scenario: fmt.Sprintf("host peak RSS (VmHWM), export of %s keys", fmtCount(b.o.keys)),
		value:    "not implemented yet", baseline: ref, ratio: "—", target: fmt.Sprintf("≤ %.1f×", memoryTarget), result: "n/a",
	})
	return nil
}
