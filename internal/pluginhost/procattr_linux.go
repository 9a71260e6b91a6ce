package pluginhost

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the plugin in its own process group, so a terminal's
// Ctrl-C reaches only the host (which commits its open batch and then ends
// the plugin), and asks the kernel to send SIGTERM if the host dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
