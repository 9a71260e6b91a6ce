package fold

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A fold's directory holds numbered generations and a CURRENT file naming
// the published one:
//
//	<dir>/CURRENT       "gen-000002\n"
//	<dir>/gen-000002/   the published generation (the store's own files)
//	<dir>/gen-000003/   a shadow being built (present only during a rebuild)
//
// Publishing a shadow is one atomic rename of CURRENT. A crash leaves either
// the old generation published (the shadow is resumed or wiped on restart)
// or the new one (the old directory is deleted on restart): never a mix.

const currentFile = "CURRENT"

func genName(n int) string { return fmt.Sprintf("gen-%06d", n) }

func parseGen(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "gen-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}

// layout is what a fold directory holds at start-up.
type layout struct {
	published int // 0: none yet
	shadow    int // 0: none
}

// scanDir reads the fold directory and deletes what a crash left behind:
// generations older than the published one and every shadow but the newest.
func scanDir(dir string) (layout, error) {
	var l layout
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return l, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, currentFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return l, err
	default:
		n, ok := parseGen(strings.TrimSpace(string(raw)))
		if !ok {
			return l, fmt.Errorf("%s: corrupt %s file: %q", dir, currentFile, raw)
		}
		l.published = n
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return l, err
	}
	var gens []int
	for _, e := range entries {
		if n, ok := parseGen(e.Name()); ok && e.IsDir() {
			gens = append(gens, n)
		}
	}
	sort.Ints(gens)
	for _, n := range gens {
		if n > l.published && n == gens[len(gens)-1] {
			l.shadow = n
			continue
		}
		if n != l.published {
			if err := os.RemoveAll(filepath.Join(dir, genName(n))); err != nil {
				return l, err
			}
		}
	}
	if l.published > 0 {
		if _, err := os.Stat(filepath.Join(dir, genName(l.published))); err != nil {
			return l, fmt.Errorf("%s: %s names %s, which is missing: %w", dir, currentFile, genName(l.published), err)
		}
	}
	return l, nil
}

// publish makes generation n the published one, durably.
func publish(dir string, n int) error {
	tmp := filepath.Join(dir, currentFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(genName(n) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
