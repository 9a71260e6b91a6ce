package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// watcher is a running `slipstream watch`, its output lines on channels.
type watcher struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout chan string
	stderr chan string
	exited chan error
}

func (q *quickstart) watch(args ...string) *watcher {
	q.t.Helper()
	w := &watcher{t: q.t, cmd: exec.Command(q.bin, append([]string{"watch", "--api", q.httpAddr}, args...)...),
		stdout: make(chan string, 100), stderr: make(chan string, 100), exited: make(chan error, 1)}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		q.t.Fatal(err)
	}
	errOut, err := w.cmd.StderrPipe()
	if err != nil {
		q.t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		q.t.Fatal(err)
	}
	lines := func(r io.Reader, ch chan string) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}
	go lines(out, w.stdout)
	go lines(errOut, w.stderr)
	q.t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	return w
}

// line waits for the next line of ch.
func (w *watcher) line(ch chan string, what string) string {
	w.t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			w.t.Fatalf("slipstream watch ended before %s", what)
		}
		return l
	case <-time.After(20 * time.Second):
		w.t.Fatalf("no %s from slipstream watch within 20s", what)
	}
	return ""
}

// wait waits for the process to exit and returns its exit code.
func (w *watcher) wait() int {
	w.t.Helper()
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		return exitCode(err)
	case <-time.After(20 * time.Second):
		w.t.Fatal("slipstream watch did not exit within 20s")
	}
	return -1
}

// TestWatch runs `slipstream watch` against the quickstart: the changes
// after --from as JSON, in order, the fold's transform and scope applied;
// the changes after the start for people; exit 0 on SIGINT and SIGTERM,
// exit 1 with the reason on a reset, exit 2 without a fold.
func TestWatch(t *testing.T) {
	q := newQuickstart(t)
	q.start()
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.a", "one")
	q.read("route.a", "one")
	resp, err := http.Get("http://" + q.httpAddr + "/v1/folds/routes/keys?limit=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	from := resp.Header.Get("Slipstream-Generation") + "." + resp.Header.Get("Slipstream-Cursor")

	// Flags after the fold too.
	js := q.watch("routes", "--json", "--from", from, "--prefix", "route.")
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.b", "two")
	q.cli("kv", "--server", q.natsURL, "put", "config", "other.x", "out of scope")
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.db.secret", "denied by the transform")
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.c", "line one\nline two")
	q.cli("kv", "--server", q.natsURL, "del", "config", "route.b")
	want := []struct{ op, key, value string }{
		{"put", "route.b", "two"}, {"put", "route.c", "line one\nline two"}, {"delete", "route.b", ""},
	}
	var prev uint64
	for _, w := range want {
		l := js.line(js.stdout, "a JSON line")
		var got struct {
			Op       string  `json:"op"`
			Key      string  `json:"key"`
			Revision uint64  `json:"revision"`
			Value    *string `json:"value"`
			Position string  `json:"position"`
		}
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		value := ""
		if got.Value != nil {
			value = *got.Value
		}
		if got.Op != w.op || got.Key != w.key || value != w.value || got.Revision <= prev || !strings.HasSuffix(got.Position, "."+strconv.FormatUint(got.Revision, 10)) {
			t.Errorf("line %q, want %s %s %q after revision %d", l, w.op, w.key, w.value, prev)
		}
		prev = got.Revision
	}

	// From now, for people; it says on stderr when it is watching.
	people := q.watch("--bookmark", "200ms", "routes")
	if l := people.line(people.stderr, "the watching line"); !strings.HasPrefix(l, "watching routes") {
		t.Fatalf("stderr: %q, want watching routes ...", l)
	}
	q.cli("kv", "--server", q.natsURL, "put", "config", "route.d", "hello world")
	if l := people.line(people.stdout, "a put line"); !strings.HasPrefix(l, "put route.d ") || !strings.HasSuffix(l, " hello world") {
		t.Errorf("line %q, want put route.d REV hello world", l)
	}
	q.cli("kv", "--server", q.natsURL, "del", "config", "route.d")
	if l := people.line(people.stdout, "a del line"); !strings.HasPrefix(l, "del route.d ") {
		t.Errorf("line %q, want del route.d REV", l)
	}
	if l := js.line(js.stdout, "the JSON line of route.d"); !strings.Contains(l, `"route.d"`) {
		t.Errorf("JSON watcher: %q", l)
	}

	if err := people.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := people.wait(); code != 0 {
		t.Errorf("watch after SIGINT: exit %d, want 0", code)
	}
	if err := js.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := js.wait(); code != 0 {
		t.Errorf("watch after SIGTERM: exit %d, want 0", code)
	}

	// A position of another generation: a reset, exit 1.
	out, err := exec.Command(q.bin, "watch", "--api", q.httpAddr, "--from", "99.1", "routes").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "reset") || !strings.Contains(string(out), "generation 99") {
		t.Errorf("watch --from 99.1: exit %d, want 1 with the reason\n%s", code, out)
	}
	out, err = exec.Command(q.bin, "watch", "--api", q.httpAddr).CombinedOutput()
	if code := exitCode(err); code != 2 {
		t.Errorf("watch without a fold: exit %d, want 2\n%s", code, out)
	}
	out, err = exec.Command(q.bin, "watch", "--api", q.httpAddr, "--from", "12", "routes").CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "GENERATION.CURSOR") {
		t.Errorf("watch --from 12: exit %d, want 2\n%s", code, out)
	}
	out, err = exec.Command(q.bin, "watch", "--api", q.httpAddr, "nofold").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "no fold named") {
		t.Errorf("watch of an unknown fold: exit %d, want 1\n%s", code, out)
	}
}
