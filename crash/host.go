package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// foldSpec is one [[fold]] of a scenario's config.
type foldSpec struct {
	name  string // crash-STORE
	store string // sqlite or pebble
}

// host is the slipstream binary run with a scenario's config, restartable.
type host struct {
	reg     *registry
	bin     string // the slipstream executable
	config  string
	api     string // 127.0.0.1:PORT
	logPath string
	p       *proc
	client  *http.Client
}

// writeConfig writes the scenario's slipstream.toml.
func writeConfig(path, dataDir, pluginDir, natsURL, api, bucket string, replicas int, folds []foldSpec) error {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir = %s\nplugin_dir = %s\n\n", strconv.Quote(dataDir), strconv.Quote(pluginDir))
	fmt.Fprintf(&b, "[log]\nlevel = \"info\"\nformat = \"json\"\n\n")
	fmt.Fprintf(&b, "[nats]\nurl = %s\n\n", strconv.Quote(natsURL))
	fmt.Fprintf(&b, "[http]\nlisten = %s\n\n", strconv.Quote(api))
	fmt.Fprintf(&b, "[bucket.%s]\nhistory = 1\nreplicas = %d\n", bucket, replicas)
	for _, f := range folds {
		fmt.Fprintf(&b, "\n[[fold]]\nname = %s\nbucket = %s\nstore = %s\n", strconv.Quote(f.name), strconv.Quote(bucket), strconv.Quote(f.store))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func newHost(reg *registry, bin, config, api, logPath string) *host {
	return &host{reg: reg, bin: bin, config: config, api: api, logPath: logPath,
		client: &http.Client{Timeout: 10 * time.Second}}
}

// start runs the host; it does not wait for it to be ready.
func (h *host) start() error {
	if h.p != nil && !h.p.exited() {
		return fmt.Errorf("slipstream already runs (pid %d)", h.p.pid())
	}
	p, err := h.reg.start("slipstream", exec.Command(h.bin, "run", "--config", h.config), h.logPath)
	if err != nil {
		return err
	}
	h.p = p
	return nil
}

func (h *host) pid() int { return h.p.pid() }

// plugins lists the host's live plugin processes by store name, and notes
// them for the final cleanup.
func (h *host) plugins() map[string][]int {
	m := pluginsOf(h.pid())
	for _, pids := range m {
		h.reg.notePlugins(pids)
	}
	return m
}

// waitReady polls /readyz until it answers 200.
func (h *host) waitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		if h.p.exited() {
			return fmt.Errorf("slipstream exited while starting:\n%s", tail(h.logPath, 20))
		}
		resp, err := h.client.Get("http://" + h.api + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("/readyz not 200 within %v: %s %s", wait, resp.Status, strings.TrimSpace(string(body)))
			}
		} else if time.Now().After(deadline) {
			return fmt.Errorf("/readyz not 200 within %v: %v", wait, err)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitAPI polls /livez until the API answers.
func (h *host) waitAPI(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		if h.p.exited() {
			return fmt.Errorf("slipstream exited while starting:\n%s", tail(h.logPath, 20))
		}
		resp, err := h.client.Get("http://" + h.api + "/livez")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/livez not 200 within %v: %v", wait, err)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

// foldStatus is the part of GET /v1/folds/NAME this program reads.
type foldStatus struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Reason     string `json:"reason"`
	Ready      bool   `json:"ready"`
	Stale      bool   `json:"stale"`
	Generation int    `json:"generation"`
	Cursor     uint64 `json:"cursor"`
	StreamLast uint64 `json:"stream_last_seq"`
	Pending    uint64 `json:"pending"`
	Keys       uint64 `json:"keys"`
}

func (s foldStatus) String() string {
	r := ""
	if s.Reason != "" {
		r = " reason=" + strconv.Quote(s.Reason)
	}
	return fmt.Sprintf("state=%s cursor=%d stream_last_seq=%d generation=%d keys=%d stale=%v%s",
		s.State, s.Cursor, s.StreamLast, s.Generation, s.Keys, s.Stale, r)
}

func (h *host) status(ctx context.Context, fold string) (foldStatus, error) {
	var st foldStatus
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.api+"/v1/folds/"+url.PathEscape(fold), nil)
	resp, err := h.client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /v1/folds/%s: %s %s", fold, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("GET /v1/folds/%s: %w", fold, err)
	}
	return st, nil
}

// readAnswer is one GET /v1/folds/NAME/keys/KEY.
type readAnswer struct {
	err      error // transport error
	status   int
	body     []byte
	revision string // Slipstream-Revision header
}

func (h *host) read(ctx context.Context, fold, key string) readAnswer {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+h.api+"/v1/folds/"+url.PathEscape(fold)+"/keys/"+url.PathEscape(key), nil)
	resp, err := h.client.Do(req)
	if err != nil {
		return readAnswer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return readAnswer{err: err, status: resp.StatusCode}
	}
	return readAnswer{status: resp.StatusCode, body: body, revision: resp.Header.Get("Slipstream-Revision")}
}

// verifyReport is slipstream's own comparison, fetched only to help explain
// a divergence this program found on its own.
func (h *host) verifyReport(ctx context.Context, fold string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.api+"/v1/folds/"+url.PathEscape(fold)+"/verify", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4000))
	return resp.Status + " " + string(body)
}

// kill SIGKILLs the host process alone and waits until it is reaped.
func (h *host) kill() {
	h.p.kill()
}

// stop kills the host at the end of a scenario.
func (h *host) stop() {
	if h.p == nil {
		return
	}
	exes := map[int]string{}
	if !h.p.exited() {
		for _, pids := range h.plugins() {
			for _, pid := range pids {
				exes[pid] = exeOf(pid)
			}
		}
	}
	h.p.kill()
	for pid, exe := range exes {
		killPlugin(pid, exe)
	}
}
