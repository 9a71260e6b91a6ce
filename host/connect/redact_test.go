package connect

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, url := range []string{
		"nats://ops:hunter2@n1:4222",
		"nats://ops:hunter2@n1:4222, tls://ops:hunter2@n2:4222",
		"nats://ops:hunter2@n1:4222,%zz://ops:hunter2@n2",
	} {
		if got := redact(url); strings.Contains(got, "hunter2") {
			t.Errorf("redact(%q) = %q: the password shows", url, got)
		}
	}
	if got := redact("nats://n1:4222"); got != "nats://n1:4222" {
		t.Errorf("redact of a URL without a password changed it: %q", got)
	}
}
