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
	"github.com/spf13/cobra"
)

// The artifact commands: export from a running service, import into a
// stopped one, inspect an artifact. Artifacts go to files or to a NATS
// Object Store series (nats-object://BUCKET/NAME), and come from files,
// a peer's http(s):// artifact URL or a series.

const natsDefault = "nats://127.0.0.1:4222"

func exportCmd() *cobra.Command {
	var (
		to       string
		replicas int
		asJSON   bool
	)
	c := &cobra.Command{
		Use:   "export FOLD --to PATH|nats-object://BUCKET/NAME",
		Short: "Write an artifact of a running fold to a file or an Object Store series",
		Long: `Export FOLD from the running service as a snapshot artifact: to a file (written
beside it and renamed into place once verified whole), or, with --to
nats-object://BUCKET/NAME, published by the service to an Object Store series
(the series keeps its later artifact if it has one).

--json prints {fold, to, manifest} for a file and {fold, to, pointer} for a
series.`,
		Example: `  slipstream export routes --to routes.slipsnap
  slipstream export routes --to nats-object://snaps/routes --replicas 3
  slipstream export routes --to routes.slipsnap --json`,
		Args: exactArgs("FOLD"),
	}
	client := apiFlags(c.Flags())
	c.Flags().StringVar(&to, "to", "", "`PATH` of the file to write the artifact to (replaced atomically), or nats-object://BUCKET/NAME to publish it")
	c.Flags().IntVar(&replicas, "replicas", 1, "replicas of a series' buckets when the service creates them")
	jsonFlag(c, &asJSON, "print what was written as JSON")
	c.ValidArgsFunction = completeFolds(client, false)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if to == "" {
			return argsErr("--to PATH|nats-object://BUCKET/NAME is required")
		}
		fold, stdout := args[0], cmd.OutOrStdout()
		if strings.HasPrefix(to, objstore.Scheme+"://") {
			return publish(client, fold, to, replicas, stdout, asJSON)
		}
		// An export of a large fold takes longer than the status calls' timeout.
		resp, err := client.do(http.MethodGet, "/v1/folds/"+url.PathEscape(fold)+"/artifact", 0)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return apiError(resp)
		}
		m, err := saveArtifact(to, resp.Body)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(stdout, map[string]any{"fold": fold, "to": to, "manifest": m})
		}
		fmt.Fprintf(stdout, "%s: %d records at cursor %d, content hash %s\n", to, m.Records, m.Cursor, m.ContentHash)
		return nil
	}
	return c
}

// publish asks the service to export fold and publish it to the series to,
// through the service's own NATS connection.
func publish(client *apiClient, fold, to string, replicas int, stdout io.Writer, asJSON bool) error {
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
	if asJSON {
		return writeJSON(stdout, map[string]any{"fold": fold, "to": to, "pointer": p})
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

func importCmd() *cobra.Command {
	var (
		path, name, from string
		asJSON           bool
	)
	c := &cobra.Command{
		Use:   "import --config FILE --fold NAME --from PATH|URL|nats-object://BUCKET/NAME",
		Short: "Fill a fold of a stopped service from an artifact",
		Long: `Fill the fold NAME of the config FILE, whose service must be stopped, from an
artifact: a file, a peer's http(s):// artifact URL (fetched with the config's
[http] token) or an Object Store series (nats-object://BUCKET/NAME, through
the config's NATS). The next 'slipstream run' resumes the fold from the
artifact's cursor.

--json prints {fold, from, manifest}.`,
		Example: `  slipstream import --config slipstream.toml --fold routes --from routes.slipsnap
  slipstream import --config slipstream.toml --fold routes --from nats-object://snaps/routes
  slipstream import --config slipstream.toml --fold routes --from https://node1:7070/v1/folds/routes/artifact --json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || from == "" {
				return argsErr("--fold NAME and --from PATH|URL|nats-object://BUCKET/NAME are required")
			}
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m, err := service.Import(ctx, cfg, newLogger(cmd.ErrOrStderr(), cfg.Log), name, from)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"fold": name, "from": from, "manifest": m})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fold %s: imported %d records at cursor %d; the next run resumes from there\n", name, m.Records, m.Cursor)
			return nil
		},
	}
	c.Flags().StringVar(&path, "config", "", "config `FILE` of the stopped service")
	c.Flags().StringVar(&name, "fold", "", "`NAME` of the fold to fill")
	c.Flags().StringVar(&from, "from", "", "`SOURCE`: artifact file, http(s):// URL of a peer's artifact, or nats-object://BUCKET/NAME series")
	_ = c.MarkFlagFilename("config", "toml")
	jsonFlag(c, &asJSON, "print {fold, from, manifest} as JSON")
	return c
}

func artifactCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "artifact inspect PATH|URL|nats-object://BUCKET/NAME",
		Short: "Inspect snapshot artifacts",
		Long:  `Work with snapshot artifacts: 'artifact inspect' prints an artifact's manifest and verifies its payload.`,
		Example: `  slipstream artifact inspect routes.slipsnap
  slipstream artifact inspect nats-object://snaps/routes --server nats://127.0.0.1:4222 --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return argsErr("need an operation: inspect")
			}
			return unknownCommand(cmd, args[0])
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	c.AddCommand(inspectCmd())
	return c
}

func inspectCmd() *cobra.Command {
	var (
		asJSON                   bool
		server, creds, tokenFile string
	)
	c := &cobra.Command{
		Use:   "inspect PATH|URL|nats-object://BUCKET/NAME",
		Short: "Print an artifact's manifest and verify its payload",
		Long: `Read an artifact whole, from a file, a peer's http(s):// artifact URL (with the
token of --token-file) or an Object Store series (at its pointer, through
--server), check every checksum and its content hash, and print its manifest;
exit 1 if it does not verify. For a series, the pointer is printed first.

--json prints the manifest as JSON.`,
		Example: `  slipstream artifact inspect routes.slipsnap
  slipstream artifact inspect https://node1:7070/v1/folds/routes/artifact --token-file api.token
  slipstream artifact inspect nats-object://snaps/routes --server nats://127.0.0.1:4222 --json`,
		Args: exactArgs("PATH|URL|nats-object://BUCKET/NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			token, err := readToken(tokenFile)
			if err != nil {
				return err
			}
			stdout := cmd.OutOrStdout()
			src, err := openInspected(args[0], server, creds, token, stdout, asJSON)
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
			if asJSON {
				return writeJSON(stdout, m)
			}
			fmt.Fprintf(stdout, "format version   %d\nbucket           %s\nstream           %s (created %s)\nscope            %s\n"+
				"transform digest %s\ncursor           %d\nsynced at        %s\ncreated          %s by %s\nrecords          %d (%d bytes)\ncontent hash     %s (verified)\n",
				m.FormatVersion, m.Bucket, m.Stream, m.StreamCreated.Format("2006-01-02T15:04:05.999999999Z"), scope(m.Filters),
				orNone(m.TransformDigest), m.Cursor, orNone(timeOrEmpty(m)), m.Created.Format("2006-01-02T15:04:05.999999999Z"), m.Producer,
				m.Records, m.Bytes, m.ContentHash)
			return nil
		},
	}
	jsonFlag(c, &asJSON, "print the manifest as JSON")
	c.Flags().StringVar(&server, "server", natsDefault, "NATS server `URL` of a nats-object:// series (user:password@ allowed)")
	c.Flags().StringVar(&creds, "creds", "", "NATS credentials `FILE`, for a series")
	c.Flags().StringVar(&tokenFile, "token-file", os.Getenv(envTokenFile), "`FILE` holding the bearer token of a peer's http(s):// artifact URL (default $"+envTokenFile+")")
	return c
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
