package conformance

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/slipstreamkv/slipstream/internal/conformance/refstore"
	"github.com/slipstreamkv/slipstream/sdk"
)

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestRunCLIUnstartablePlugin(t *testing.T) {
	var out bytes.Buffer
	passed, failed := RunCLI(&out, "/nonexistent/slipstream-store-none", false)
	if passed != 0 || failed != 1 {
		t.Errorf("RunCLI = %d passed, %d failed; want 0, 1", passed, failed)
	}
	if !strings.HasPrefix(out.String(), "FAIL  start: ") || lastLine(out.String()) != "0 passed, 1 failed" {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestRunTextReference(t *testing.T) {
	var out bytes.Buffer
	passed, failed := runText(&out, refTarget("reference", refstore.Knobs{}, nil), true)
	text := out.String()
	if failed != 0 || passed == 0 {
		t.Fatalf("reference store: %d passed, %d failed:\n%s", passed, failed, text)
	}
	for _, tc := range cases() {
		if !regexp.MustCompile(`(?m)^(PASS|SKIP)  ` + regexp.QuoteMeta(tc.Name) + `\b`).MatchString(text) {
			t.Errorf("no PASS or SKIP line for case %s:\n%s", tc.Name, text)
		}
	}
	if want := fmt.Sprintf("%d passed, 0 failed", passed); lastLine(text) != want {
		t.Errorf("last line %q, want %q", lastLine(text), want)
	}
	if !strings.Contains(text, "      catches: ") {
		t.Errorf("verbose output does not say what cases catch:\n%s", text)
	}
}

func TestRunTextBroken(t *testing.T) {
	var lostDelete func(*refstore.Store) sdk.Store
	for _, b := range brokenStores {
		if b.name == "lost delete" {
			lostDelete = b.wrap
		}
	}
	var out bytes.Buffer
	passed, failed := runText(&out, refTarget("lost delete", refstore.Knobs{}, lostDelete), false)
	text := out.String()
	if failed == 0 {
		t.Fatalf("a store that loses deletes passed:\n%s", text)
	}
	if !regexp.MustCompile(`(?m)^FAIL  deletes \(.*\)\n      \S`).MatchString(text) {
		t.Errorf("no FAIL line with a reason for case deletes:\n%s", text)
	}
	if want := fmt.Sprintf("%d passed, %d failed", passed, failed); lastLine(text) != want {
		t.Errorf("last line %q, want %q", lastLine(text), want)
	}
}
