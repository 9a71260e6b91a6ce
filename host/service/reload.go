package service

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/slipstreamkv/slipstream/host/config"
)

// Reloaded says what a reload changed.
type Reloaded struct {
	// Added, Removed and Restarted name folds: started, stopped, and
	// stopped and started again with a changed config (a change of scope,
	// transforms or bucket rebuilds the fold as it starts).
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Restarted []string `json:"restarted"`
	Unchanged []string `json:"unchanged"`
	// NeedRestart names the changed settings a reload does not apply (the
	// NATS connection, the HTTP API, the data directory, the log): they
	// take effect at the next start.
	NeedRestart []string `json:"need_restart,omitempty"`
}

// ErrNotRunning is returned by a reload of a service that is not running.
var ErrNotRunning = errors.New("the service is not running")

// ReloadFile reads the config file again and applies it (Reload). A file
// that does not load is refused with its errors (config.Errors), and the
// running config goes on.
func (s *Service) ReloadFile(ctx context.Context) (Reloaded, error) {
	cfg, err := config.Load(s.cfg.Path)
	if err != nil {
		return Reloaded{}, err
	}
	return s.Reload(ctx, cfg)
}

// Reload applies cfg to the running service: folds added are started,
// folds removed stopped (their data stays on disk), folds whose table
// changed stopped and started again with the new one, the others left
// alone; the folds to start are validated first (Validate), and a problem
// refuses the whole reload. Bucket settings and plugin_dir apply to the
// folds it starts;
// other changed settings are named in NeedRestart and not applied. A fold
// that fails to start is an error, and the fold it replaced, if any, is
// started again as it was.
func (s *Service) Reload(ctx context.Context, cfg *config.Config) (Reloaded, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	running := s.runCtx != nil && s.runCtx.Err() == nil
	old := s.folds
	s.mu.Unlock()
	if !running {
		return Reloaded{}, ErrNotRunning
	}
	byName := map[string]*foldRun{}
	for _, fr := range old {
		byName[fr.cfg.Name] = fr
	}
	// The folds to start are checked as deep as a start would, first: a
	// plugin or a transform that would refuse them refuses the reload.
	check := *cfg
	check.Folds = nil
	for _, fc := range cfg.Folds {
		if prev := byName[fc.Name]; prev == nil || !reflect.DeepEqual(prev.cfg, fc) {
			check.Folds = append(check.Folds, fc)
		}
	}
	if err := Validate(ctx, &check, s.log); err != nil {
		return Reloaded{}, fmt.Errorf("the new config is refused, nothing changed: %w", err)
	}
	var r Reloaded
	r.NeedRestart = needRestart(s.cfg, cfg)
	// The settings a reload applies; the rest stay as they started.
	s.cfg.Buckets, s.cfg.PluginDir = cfg.Buckets, cfg.PluginDir

	var next []*foldRun
	var errs []error
	for i := range cfg.Folds {
		fc := &cfg.Folds[i]
		prev := byName[fc.Name]
		delete(byName, fc.Name)
		if prev != nil && reflect.DeepEqual(prev.cfg, *fc) {
			r.Unchanged = append(r.Unchanged, fc.Name)
			next = append(next, prev)
			continue
		}
		if prev != nil {
			s.stop(prev)
		}
		fr, err := s.prepareFold(ctx, fc)
		if err != nil {
			errs = append(errs, err)
			if prev != nil {
				// The fold keeps running as it was.
				if again, perr := s.prepareFold(ctx, &prev.cfg); perr == nil {
					next = append(next, s.started(again))
				} else {
					errs = append(errs, fmt.Errorf("fold %s: starting it again as it was: %w", fc.Name, perr))
				}
			}
			continue
		}
		next = append(next, s.started(fr))
		if prev != nil {
			r.Restarted = append(r.Restarted, fc.Name)
		} else {
			r.Added = append(r.Added, fc.Name)
		}
	}
	for _, fr := range old {
		if byName[fr.cfg.Name] == fr {
			s.stop(fr)
			r.Removed = append(r.Removed, fr.cfg.Name)
		}
	}
	s.mu.Lock()
	s.folds = next
	s.cfg.Folds = make([]config.Fold, len(next))
	for i, fr := range next {
		s.cfg.Folds[i] = fr.cfg
	}
	if s.handler.Load() != nil {
		s.buildHandler()
	}
	s.mu.Unlock()
	s.log.Info("config reloaded", "added", r.Added, "removed", r.Removed, "restarted", r.Restarted,
		"unchanged", len(r.Unchanged), "need_restart", r.NeedRestart)
	if len(r.NeedRestart) > 0 {
		s.log.Warn("changed settings take effect at the next start", "settings", r.NeedRestart)
	}
	return r, errors.Join(errs...)
}

// started launches fr and returns it.
func (s *Service) started(fr *foldRun) *foldRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.launch(fr)
	return fr
}

// stop stops a running fold: its open batch is committed, its plugin and
// chain closed, its directory released.
func (s *Service) stop(fr *foldRun) {
	fr.cancel()
	<-fr.done
	if fr.err != nil {
		s.log.Warn("stopped fold", "fold", fr.cfg.Name, "err", fr.err)
	}
}

// needRestart names the top-level settings that differ between the
// running config and cfg and that a reload does not apply.
func needRestart(running, cfg *config.Config) []string {
	a, b := *running, *cfg
	a.Folds, b.Folds = nil, nil
	a.Buckets, b.Buckets = nil, nil
	a.PluginDir, b.PluginDir = "", ""
	var out []string
	ta := reflect.TypeOf(a)
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range ta.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name := ta.Field(i).Tag.Get("toml")
			if name == "" || name == "-" {
				continue
			}
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
