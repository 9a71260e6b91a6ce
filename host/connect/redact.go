package connect

import (
	"net/url"
	"strings"
)

// netURL returns url with any password replaced, for logs and errors. A
// comma-separated list is redacted element by element.
func netURL(raw string) (string, error) {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			return "", err
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ","), nil
}
