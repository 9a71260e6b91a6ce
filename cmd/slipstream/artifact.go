package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/host/service"
)

// The artifact commands: export from a running service, import into a
// stopped one, inspect a file. Artifacts come from and go to local files;
// --from also takes a peer's http(s):// artifact URL.

func cmdExport(args []string, stdout, stderr io.Writer) error {
	fs := flags("export", stderr)
	addr := fs.String("api", apiDefault, "address of the service's HTTP API")
	to := fs.String("to", "", "file to write the artifact to (replaced atomically)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *to == "" {
		return usageErr("usage: slipstream export [--api ADDR] --to PATH FOLD")
	}
	// An export of a large fold takes longer than the status calls' timeout.
	resp, err := http.Get(apiURL(*addr, "/v1/folds/"+url.PathEscape(fs.Arg(0))+"/artifact"))
	if err != nil {
		return fmt.Errorf("is slipstream running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	m, err := saveArtifact(*to, resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d records at cursor %d, content hash %s\n", *to, m.Records, m.Cursor, m.ContentHash)
	return nil
}

// saveArtifact writes the artifact read from r to path through a temporary
// file beside it, verifying it whole before the rename makes it visible.
func saveArtifact(path string, r io.Reader) (artifact.Manifest, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return artifact.Manifest{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	m, err := readWhole(io.TeeReader(r, tmp))
	if err != nil {
		return m, err
	}
	if err := tmp.Sync(); err != nil {
		return m, err
	}
	if err := tmp.Close(); err != nil {
		return m, err
	}
	return m, os.Rename(tmp.Name(), path)
}

// readWhole reads an artifact to its end, checking every checksum and the
// content hash, and returns its manifest.
func readWhole(r io.Reader) (artifact.Manifest, error) {
	ar, err := artifact.NewReader(r)
	if err != nil {
		return artifact.Manifest{}, err
	}
	for {
		if _, err := ar.Next(); err == io.EOF {
			return ar.Manifest(), nil
		} else if err != nil {
			return ar.Manifest(), err
		}
	}
}

func cmdImport(args []string, stdout, stderr io.Writer) error {
	fs := flags("import", stderr)
	path := fs.String("config", "", "config file of the stopped service")
	name := fs.String("fold", "", "fold to fill")
	from := fs.String("from", "", "artifact file, or http(s):// URL of a peer's artifact")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *name == "" || *from == "" {
		return usageErr("usage: slipstream import --config FILE --fold NAME --from PATH|URL")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, err := service.OpenArtifact(ctx, *from)
	if err != nil {
		return err
	}
	defer src.Close()
	m, err := service.Import(ctx, cfg, newLogger(stderr, cfg.Log), *name, src)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fold %s: imported %d records at cursor %d; the next run resumes from there\n", *name, m.Records, m.Cursor)
	return nil
}

func cmdArtifact(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "inspect" {
		return usageErr("usage: slipstream artifact inspect [--json] PATH|URL")
	}
	fs := flags("artifact inspect", stderr)
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("usage: slipstream artifact inspect [--json] PATH|URL")
	}
	src, err := service.OpenArtifact(context.Background(), fs.Arg(0))
	if err != nil {
		return err
	}
	defer src.Close()
	m, err := readWhole(src)
	if err != nil {
		if errors.Is(err, artifact.ErrNotArtifact) || errors.Is(err, artifact.ErrUnsupportedVersion) {
			return err
		}
		return fmt.Errorf("the payload does not verify: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	fmt.Fprintf(stdout, "format version   %d\nbucket           %s\nstream           %s (created %s)\nscope            %s\n"+
		"transform digest %s\ncursor           %d\nsynced at        %s\ncreated          %s by %s\nrecords          %d (%d bytes)\ncontent hash     %s (verified)\n",
		m.FormatVersion, m.Bucket, m.Stream, m.StreamCreated.Format("2006-01-02T15:04:05.999999999Z"), scope(m.Filters),
		orNone(m.TransformDigest), m.Cursor, orNone(timeOrEmpty(m)), m.Created.Format("2006-01-02T15:04:05.999999999Z"), m.Producer,
		m.Records, m.Bytes, m.ContentHash)
	return nil
}

func scope(filters []string) string {
	if len(filters) == 0 {
		return "(whole bucket)"
	}
	return strings.Join(filters, " ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func timeOrEmpty(m artifact.Manifest) string {
	if m.SyncedAt.IsZero() {
		return ""
	}
	return m.SyncedAt.Format("2006-01-02T15:04:05.999999999Z")
}
