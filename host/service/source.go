package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/slipstreamkv/slipstream/host/fold"
)

// OpenArtifact opens the artifact at src: a file, or an http(s):// URL such
// as a peer's GET /v1/folds/NAME/artifact, asked with token as a bearer
// token when it is not empty (a fleet's nodes share their API's token). A
// file that does not exist, and a peer that answers 404 or is not ready
// (503), are errors wrapping fold.ErrNoArtifact.
func OpenArtifact(ctx context.Context, src, token string) (io.ReadCloser, error) {
	if !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
		f, err := os.Open(src)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", fold.ErrNoArtifact, err)
		}
		return f, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	err = fmt.Errorf("%s: %s: %s", src, resp.Status, strings.TrimSpace(string(body)))
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusServiceUnavailable {
		err = fmt.Errorf("%w: %w", fold.ErrNoArtifact, err)
	}
	return nil, err
}
