package connect

import (
	"net/url"
	"strings"
)

// redact returns a server URL with any password replaced, for logs and
// errors. A comma-separated list is redacted element by element; an element
// that does not parse is shown as "(unparsable URL)", since it may still
// hold a password.
func redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable URL)"
			continue
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}
