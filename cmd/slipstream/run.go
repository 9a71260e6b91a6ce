package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/slipstreamkv/slipstream/host/service"
	"github.com/slipstreamkv/slipstream/internal/sdnotify"
	"github.com/spf13/cobra"
)

// loadConfig loads the config file at path. Its problems are the
// caller's: exit 2.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, argsErr("--config FILE is required")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageErr("invalid config:\n%v", err)
	}
	return cfg, nil
}

func validateCmd() *cobra.Command {
	var (
		path    string
		asJSON  bool
		offline bool
	)
	c := &cobra.Command{
		Use:   "validate [--config] FILE",
		Short: "Check a config file as deeply as run would, and exit",
		Long: `Load a config file as 'slipstream run' would and check it: every key, value and
file it names (a token file is read), the HTTP API's TLS key pair, and, unless
--offline, each fold's store plugin (launched, its handshake checked, a store
opened on a scratch directory with the fold's store_config) and each
transform (compiled, its init given its config). Everything run would refuse
at start is refused, except what needs NATS. Nothing is written to data_dir,
so a running service's config can be checked. Problems name the file, line
and key, or the fold and module, and exit 2. --json prints {config, folds}.`,
		Example: `  slipstream validate --config slipstream.toml
  slipstream validate slipstream.toml --offline
  slipstream validate slipstream.toml --json`,
		Args: rangeArgs(0, "[FILE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" && len(args) == 1 {
				path = args[0]
			}
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if offline {
				err = service.ValidateOffline(cfg)
			} else {
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				err = service.Validate(ctx, cfg, newLogger(cmd.ErrOrStderr(), cfg.Log))
			}
			if err != nil {
				return usageErr("invalid config:\n%v", err)
			}
			if asJSON {
				names := make([]string, len(cfg.Folds))
				for i, f := range cfg.Folds {
					names[i] = f.Name
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"config": cfg.Path, "valid": true, "folds": names})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d folds)\n", cfg.Path, len(cfg.Folds))
			return nil
		},
	}
	c.Flags().StringVar(&path, "config", "", "config `FILE`")
	c.Flags().BoolVar(&offline, "offline", false, "check the file only: start no store plugin and no transform")
	jsonFlag(c, &asJSON, "print {config, valid, folds} as JSON")
	return c
}

func runCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run every fold of a config file",
		Long: `Run the service: every [[fold]] of the config file, supervised, with the HTTP
API, and the embedded NATS server when the config has no [nats] url. It logs
to stderr (text on a terminal, JSON otherwise, unless [log] says which), tells
systemd how it goes when NOTIFY_SOCKET is set, and stops cleanly on SIGINT or
SIGTERM, committing every fold's open batch.

A config error exits 2; any other failure to start exits 1 at once.`,
		Example: `  slipstream run --config slipstream.toml
  slipstream run --config config.example.toml`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runService(path, cmd.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&path, "config", "", "config `FILE`")
	_ = c.MarkFlagFilename("config", "toml")
	return c
}

// runService is slipstream run.
func runService(path string, stderr io.Writer) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.Log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	notify := sdnotify.New(logger)
	notify.Status("starting: connecting to NATS, opening the folds")
	svc, err := service.Start(ctx, cfg, logger, service.Options{Producer: "slipstream " + version})
	if err != nil {
		notify.Stopped("failed to start: " + err.Error())
		return err
	}
	logger.Info("slipstream running", "version", version, "config", cfg.Path, "folds", len(cfg.Folds),
		"http", svc.HTTPAddr(), "embedded_nats", svc.NATSURL())
	// READY=1 once every fold has started (see "Running under systemd" in
	// the README). Watch runs while Run does; a signal or Run's return ends
	// it, and only then is STOPPING=1 sent, so no ping follows it.
	watchCtx, endWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if !notify.Enabled() {
			return
		}
		if foldsStarted(watchCtx, svc, notify) {
			probe := func() string { return runStatus(svc) }
			notify.Ready(probe())
			notify.Watch(watchCtx, probe)
		}
		notify.Stopping("stopping: committing the open batches, closing the stores")
	}()
	// SIGHUP (systemctl reload, slipstream reload's signal) re-reads the
	// config and applies it; one that does not load, or a fold that would
	// not start, is refused with its errors and the running config goes on.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			notify.Status("reloading the config")
			res, err := svc.ReloadFile(ctx)
			if err != nil {
				logger.Error("reload refused; the running config goes on", "err", err)
			} else {
				logger.Info("reloaded", "added", res.Added, "removed", res.Removed, "restarted", res.Restarted)
			}
			notify.Status(runStatus(svc))
		}
	}()
	err = svc.Run(ctx)
	endWatch()
	<-watched
	if err != nil {
		notify.Stopped("stopped: " + err.Error())
	} else {
		notify.Stopped("stopped")
	}
	logger.Info("slipstream stopped")
	return err
}

// startPoll is how often foldsStarted looks at the folds' states.
const startPoll = 50 * time.Millisecond

// foldsStarted waits until every fold has left the starting state: it has
// opened its published generation (if it has one, which then serves reads)
// and started its watch, its bootstrap or its rebuild, or its first session
// failed and it retries (stalled). It reports the count in STATUS lines
// meanwhile, and returns false if ctx ends first.
func foldsStarted(ctx context.Context, svc *service.Service, notify *sdnotify.Notifier) bool {
	t := time.NewTicker(startPoll)
	defer t.Stop()
	folds := svc.Folds()
	for {
		started := 0
		for _, f := range folds {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			if f.Status(sctx).State != fold.StateStarting {
				started++
			}
			cancel()
		}
		if started == len(folds) {
			return true
		}
		notify.Status(fmt.Sprintf("starting: %d/%d folds opened", started, len(folds)))
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// runStatus is the status line a service manager shows while the service
// runs: where the API listens and how many folds have caught up with their
// stream. Fold.Ready takes each fold's locks, so a fold wedged on them
// blocks this probe and with it the watchdog's pings.
func runStatus(svc *service.Service) string {
	folds := svc.Folds()
	var behind []string
	for _, f := range folds {
		if !f.Ready() {
			behind = append(behind, f.Name())
		}
	}
	var b strings.Builder
	b.WriteString("running")
	if addr := svc.HTTPAddr(); addr != "" {
		b.WriteString(", http api on " + addr)
	}
	fmt.Fprintf(&b, "; %d/%d folds caught up", len(folds)-len(behind), len(folds))
	if len(behind) > 0 {
		const most = 5
		b.WriteString(" (not yet: " + strings.Join(behind[:min(len(behind), most)], ", "))
		if len(behind) > most {
			fmt.Fprintf(&b, " and %d more", len(behind)-most)
		}
		b.WriteString(")")
	}
	return b.String()
}

// newLogger logs text on a terminal and JSON otherwise, unless the config
// says which.
func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(orDefault(c.Level, "info"))))
	opts := &slog.HandlerOptions{Level: level}
	format := orDefault(c.Format, "auto")
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
