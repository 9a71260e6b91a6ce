package pluginhost

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/testenv"
)

func TestPluginEnv(t *testing.T) {
	want := []string{"GLIBC_TUNABLES=" + MallocTunables}
	if got := pluginEnv([]string{"HOME=/root", "PATH=/bin"}); !slices.Equal(got, want) {
		t.Errorf("without GLIBC_TUNABLES: %q, want %q", got, want)
	}
	for _, set := range []string{"GLIBC_TUNABLES=glibc.malloc.arena_max=2", "GLIBC_TUNABLES="} {
		if got := pluginEnv([]string{"HOME=/root", set}); got != nil {
			t.Errorf("with %s: %q, want nothing added", set, got)
		}
	}
}

// TestPluginStartsWithTunables reads a real plugin process's environment:
// the default tunables when the host sets none, the host's own otherwise.
func TestPluginStartsWithTunables(t *testing.T) {
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("no /proc here")
	}
	bin := testenv.SQLitePlugin(t)
	for _, tc := range []struct {
		host string // "" leaves the variable unset
		want string
	}{
		{"", "GLIBC_TUNABLES=" + MallocTunables},
		{"glibc.malloc.arena_max=2", "GLIBC_TUNABLES=glibc.malloc.arena_max=2"},
	} {
		t.Run(fmt.Sprintf("host=%q", tc.host), func(t *testing.T) {
			if tc.host != "" {
				t.Setenv("GLIBC_TUNABLES", tc.host)
			} else if v, ok := os.LookupEnv("GLIBC_TUNABLES"); ok {
				t.Setenv("GLIBC_TUNABLES", v) // restored after
				os.Unsetenv("GLIBC_TUNABLES")
			}
			p, err := Launch(context.Background(), Config{Path: bin})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.Pid()))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range bytes.Split(raw, []byte{0}) {
				if bytes.HasPrefix(kv, []byte("GLIBC_TUNABLES=")) {
					got = append(got, string(kv))
				}
			}
			// glibc parses the variable in place at start-up and leaves it
			// cut after its first tunable: what the process shows is the
			// value given up to its first ':'.
			if len(got) != 1 || !strings.HasPrefix(tc.want+":", got[0]+":") {
				t.Errorf("the plugin's GLIBC_TUNABLES: %q, want %q or its first tunable", got, tc.want)
			}
		})
	}
}
