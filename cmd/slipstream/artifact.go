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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipstreamkv/slipstream/host/artifact"
	"github.com/slipstreamkv/slipstream/host/objstore"
	"github.com/slipstreamkv/slipstream/host/service"
)

// The artifact commands: export from a running service, import into a
// stopped one, inspect an artifact. Artifacts go to files or to a NATS
// Object Store series (nats-object://BUCKET/NAME), and come from files,
// a peer's http(s):// artifact URL or a series.

const natsDefault = "nats://127.0.0.1:4222"

func cmdExport(args []string, stdout, stderr io.Writer) error {
	fs := flags("export", stderr)
	client := apiFlags(fs)
	to := fs.String("to", "", "file to write the artifact to (replaced atomically), or nats-object://BUCKET/NAME to publish it")
	replicas := fs.Int("replicas", 1, "replicas of a series' buckets when the service creates them")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *to == "" {
		return usageErr("usage: slipstream export [--api ADDR] --to PATH|nats-object://BUCKET/NAME FOLD")
	}
	if strings.HasPrefix(*to, objstore.Scheme+"://") {
		return publish(client, fs.Arg(0), *to, *replicas, stdout)
	}
	// An export of a large fold takes longer than the status calls' timeout.
	resp, err := client.do(http.MethodGet, "/v1/folds/"+url.PathEscape(fs.Arg(0))+"/artifact", 0)
	if err != nil {
		return err
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

// publish asks the service to export fold and publish it to the series to,
// through the service's own NATS connection.
func publish(client *apiClient, fold, to string, replicas int, stdout io.Writer) error {
	if _, err := objstore.ParseURL(to); err != nil {
		return usageErr("--to: %v", err)
	}
	q := url.Values{"to": {to}, "replicas": {strconv.Itoa(replicas)}}
	resp, err := client.do(http.MethodPost, "/v1/folds/"+url.PathEscape(fold)+"/artifact?"+q.Encode(), 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	var p objstore.Pointer
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return fmt.Errorf("reading the service's answer: %w", err)
	}
	fmt.Fprintf(stdout, "%s: published %s, %d records at cursor %d, content hash %s\n", to, p.Object, p.Records, p.Cursor, p.ContentHash)
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
	from := fs.String("from", "", "artifact file, http(s):// URL of a peer's artifact, or nats-object://BUCKET/NAME series")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *name == "" || *from == "" {
		return usageErr("usage: slipstream import --config FILE --fold NAME --from PATH|URL|nats-object://BUCKET/NAME")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := service.Import(ctx, cfg, newLogger(stderr, cfg.Log), *name, *from)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fold %s: imported %d records at cursor %d; the next run resumes from there\n", *name, m.Records, m.Cursor)
	return nil
}

func cmdArtifact(args []string, stdout, stderr io.Writer) error {
	const use = "usage: slipstream artifact inspect [--json] [--server URL] [--creds FILE] [--token-file FILE] PATH|URL|nats-object://BUCKET/NAME"
	if len(args) == 0 || args[0] != "inspect" {
		return usageErr(use)
	}
	fs := flags("artifact inspect", stderr)
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	server := fs.String("server", natsDefault, "NATS server of a nats-object:// series (user:password@ allowed)")
	creds := fs.String("creds", "", "NATS credentials file, for a series")
	tokenFile := fs.String("token-file", os.Getenv(envTokenFile), "file holding the bearer token of a peer's http(s):// artifact URL (default $"+envTokenFile+")")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr(use)
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	src, err := openInspected(fs.Arg(0), *server, *creds, token, stdout, *asJSON)
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

// openInspected opens the artifact artifact inspect reads. A series is read
// at its pointer, which is printed first for people.
func openInspected(src, server, creds, token string, stdout io.Writer, asJSON bool) (io.ReadCloser, error) {
	if !strings.HasPrefix(src, objstore.Scheme+"://") {
		return service.OpenArtifact(context.Background(), src, token)
	}
	loc, err := objstore.ParseURL(src)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	nc, js, err := dial(server, creds)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := objstore.Bind(ctx, js, loc.Bucket, objstore.Options{})
	if err != nil {
		nc.Close()
		return nil, err
	}
	// The payload is read after this returns: its context is the process's.
	rc, p, err := st.Open(context.Background(), loc.Name)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if !asJSON {
		fmt.Fprintf(stdout, "series           %s\nobject           %s (%d bytes)\npublished        %s by %s (pointer revision %d)\n",
			loc, p.Object, p.Size, p.Published.UTC().Format("2006-01-02T15:04:05.999999999Z"), p.Exporter, p.Revision)
	}
	return closeBoth{rc, nc}, nil
}

// closeBoth closes a series' payload and then the connection it is read on.
type closeBoth struct {
	io.ReadCloser
	nc interface{ Close() }
}

func (c closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.nc.Close()
	return err
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
