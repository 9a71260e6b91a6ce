package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER of prctl(2).
const prSetChildSubreaper = 36

// becomeSubreaper makes this process the parent of any orphan among its
// descendants (a store plugin that outlives its host), so that an orphan is
// recognisable (its parent is this process) and can be reaped and killed
// here instead of lingering under init.
func becomeSubreaper() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return errno
	}
	return nil
}

// spawner starts every child process from one goroutine locked to its OS
// thread for the life of the program, so that the children's Pdeathsig
// (SIGKILL when the thread that started them dies) fires only when this
// program dies, never because the Go runtime retired a thread.
type spawner struct{ req chan func() }

func newSpawner() *spawner {
	s := &spawner{req: make(chan func())}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the program
		for f := range s.req {
			f()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error, 1)
	s.req <- func() { done <- cmd.Start() }
	return <-done
}

// proc is one child process this program started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended (and was reaped).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process alone (not its children) and waits for
// it to be reaped.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// registry tracks every process this program started and every plugin
// process it saw, so that all of them can be killed at exit, also after a
// failure.
type registry struct {
	sp      *spawner
	mu      sync.Mutex
	procs   []*proc
	plugins map[int]string // pid -> executable, as seen under a host
}

func newRegistry() *registry {
	return &registry{sp: newSpawner(), plugins: map[int]string{}}
}

// start runs cmd with its stdout and stderr appended to logPath.
func (r *registry) start(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "===== %s: start %s %s\n", time.Now().Format(time.RFC3339Nano), name, strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = f, f
	if err := r.sp.start(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(f, "===== %s: %s exited: %v\n", time.Now().Format(time.RFC3339Nano), name, cmd.ProcessState)
		f.Close()
		close(p.done)
	}()
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	return p, nil
}

// notePlugins remembers plugin processes for the final cleanup.
func (r *registry) notePlugins(pids []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pid := range pids {
		if exe := exeOf(pid); exe != "" {
			r.plugins[pid] = exe
		}
	}
}

// killAll kills every process started and every plugin seen that still runs.
func (r *registry) killAll() {
	r.mu.Lock()
	procs := slices.Clone(r.procs)
	plugins := make(map[int]string, len(r.plugins))
	for k, v := range r.plugins {
		plugins[k] = v
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.kill() }()
	}
	wg.Wait()
	for pid, exe := range plugins {
		killPlugin(pid, exe)
	}
	// Orphans reparented to this process (a subreaper): plugins of a host
	// this program started, whatever their state.
	for _, pid := range children(os.Getpid()) {
		if exe := exeOf(pid); strings.HasPrefix(filepath.Base(exe), "slipstream-store-") {
			killPlugin(pid, exe)
		}
	}
}

// killPlugin kills pid if it still runs the executable exe (a pid is not
// reused for another program by mistake), and reaps it if it is ours.
func killPlugin(pid int, exe string) {
	if alive(pid) && exeOf(pid) == exe {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	reap(pid)
}

// reap collects pid's exit status when it is an orphan reparented to this
// process; Go's os/exec never waits for it.
func reap(pid int) {
	if ppidOf(pid) != os.Getpid() {
		return
	}
	for range 50 {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid || errors.Is(err, syscall.ECHILD) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stat returns the fields of /proc/PID/stat after the command name: the
// state is [0], the parent pid [1].
func stat(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	f := stat(pid)
	return len(f) > 0 && f[0] != "Z"
}

func ppidOf(pid int) int {
	f := stat(pid)
	if len(f) < 2 {
		return -1
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// exeOf is the executable of pid, "" when it has none (it ended).
func exeOf(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	// A binary rebuilt while it runs reads "PATH (deleted)".
	return strings.TrimSuffix(exe, " (deleted)")
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	dirs, _ := os.ReadDir("/proc")
	want := strconv.Itoa(pid)
	for _, d := range dirs {
		c, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if f := stat(c); len(f) > 1 && f[1] == want {
			out = append(out, c)
		}
	}
	return out
}

// pluginsOf lists the live store plugin processes under host pid, by store
// name (slipstream-store-NAME).
func pluginsOf(pid int) map[string][]int {
	out := map[string][]int{}
	for _, c := range children(pid) {
		if !alive(c) {
			continue
		}
		base := filepath.Base(exeOf(c))
		if name, ok := strings.CutPrefix(base, "slipstream-store-"); ok {
			out[name] = append(out[name], c)
		}
	}
	return out
}
