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

	"github.com/slipstreamkv/slipstream/host/config"
	"github.com/slipstreamkv/slipstream/host/service"
)

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageErr("--config FILE is required")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid config:\n%v", errUsage, err)
	}
	return cfg, nil
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := flags("validate", stderr)
	path := fs.String("config", "", "config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d folds)\n", cfg.Path, len(cfg.Folds))
	return nil
}

func cmdRun(args []string, _, stderr io.Writer) error {
	fs := flags("run", stderr)
	path := fs.String("config", "", "config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.Log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc, err := service.Start(ctx, cfg, logger, service.Options{Producer: "slipstream " + version})
	if err != nil {
		return err
	}
	logger.Info("slipstream running", "version", version, "config", cfg.Path, "folds", len(cfg.Folds),
		"http", svc.HTTPAddr(), "embedded_nats", svc.NATSURL())
	err = svc.Run(ctx)
	logger.Info("slipstream stopped")
	return err
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
