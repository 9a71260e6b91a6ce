//go:build !linux

package pluginhost

import "os/exec"

// setProcAttr is a no-op where Pdeathsig does not exist; the plugin's own
// parent watch still ends it when the host dies.
func setProcAttr(*exec.Cmd) {}
