// Package sdnotify tells a service manager how `slipstream run` is going,
// with the sd_notify protocol over the datagram socket NOTIFY_SOCKET names:
// READY=1 once the service serves, STOPPING=1 when it begins to shut down,
// STATUS= lines a person reads in `systemctl status`, and WATCHDOG=1 pings
// at half of WATCHDOG_USEC while the service answers its liveness probe.
//
// The messages are sent with github.com/coreos/go-systemd/v22/daemon. When
// NOTIFY_SOCKET is not set (the service was not started by systemd with
// Type=notify) every method does nothing.
package sdnotify

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// StatusEvery is how often Watch asks its probe for a new status line when
// the watchdog does not ask for something sooner.
const StatusEvery = time.Second

// Notifier sends a service's state changes to the service manager.
type Notifier struct {
	log *slog.Logger
	// on: NOTIFY_SOCKET was set when the Notifier was made.
	on bool
	// watchdog is WATCHDOG_USEC, 0 when the manager wants no pings.
	watchdog time.Duration

	mu       sync.Mutex
	status   string // the last STATUS sent
	stopping bool   // STOPPING=1 sent: no more pings, READY or STATUS
	failed   bool   // a send failed and was logged; later failures are not
}

// New reads NOTIFY_SOCKET and WATCHDOG_USEC (with WATCHDOG_PID, which must
// be this process when set). A malformed WATCHDOG_USEC is logged and leaves
// the watchdog off.
func New(log *slog.Logger) *Notifier {
	n := &Notifier{log: log, on: os.Getenv("NOTIFY_SOCKET") != ""}
	if !n.on {
		return n
	}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd: watchdog off", "err", err)
	}
	n.watchdog = wd
	return n
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n.on }

// Watchdog is the manager's watchdog timeout, 0 when it is off.
func (n *Notifier) Watchdog() time.Duration { return n.watchdog }

// Status sends a STATUS= line, unless it is the one sent last.
func (n *Notifier) Status(status string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping || oneLine(status) == n.status {
		return
	}
	n.sendLocked(status)
}

// Ready says the service is ready, with its status line.
func (n *Notifier) Ready(status string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return
	}
	n.sendLocked(status, daemon.SdNotifyReady)
}

// Stopping says the service has begun to shut down, with its status line.
// Only the first call sends; Watch sends no ping after it.
func (n *Notifier) Stopping(status string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return
	}
	n.sendLocked(status, daemon.SdNotifyStopping)
	n.stopping = true
}

// Stopped sends the last status line, after the shutdown finished.
func (n *Notifier) Stopped(status string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sendLocked(status)
}

// Watch asks probe for the service's status line every StatusEvery, and
// sends it when it changed; with the watchdog on, it also pings every half
// of the watchdog timeout, each ping right after a probe returned. It
// returns when ctx ends, or at once when no manager listens.
//
// The pings are tied to the probe: a probe that blocks (a lock held
// forever) holds the pings back, and the manager, after the timeout,
// restarts the service. The caller ties Watch to its main loop by ending
// ctx when that loop returns.
func (n *Notifier) Watch(ctx context.Context, probe func() string) {
	if !n.on {
		return
	}
	status := time.NewTicker(StatusEvery)
	defer status.Stop()
	var ping <-chan time.Time
	if n.watchdog > 0 {
		t := time.NewTicker(n.watchdog / 2)
		defer t.Stop()
		ping = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-status.C:
			n.Status(probe())
		case <-ping:
			line := probe()
			if ctx.Err() != nil {
				return
			}
			n.Status(line)
			n.ping()
		}
	}
}

func (n *Notifier) ping() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.stopping {
		n.sendLocked("", daemon.SdNotifyWatchdog)
	}
}

// sendLocked sends the states and, when status is not empty, the status
// line after them, in one datagram.
func (n *Notifier) sendLocked(status string, states ...string) {
	if !n.on {
		return
	}
	msg := strings.Join(states, "\n")
	if status != "" {
		if msg != "" {
			msg += "\n"
		}
		status = oneLine(status)
		msg += "STATUS=" + status
		n.status = status
	}
	if _, err := daemon.SdNotify(false, msg); err != nil && !n.failed {
		n.failed = true
		n.log.Warn("systemd: cannot notify NOTIFY_SOCKET; later failures are not logged", "err", err)
	}
}

// oneLine keeps a status to one line: a newline would start another
// assignment.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
