package objstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// objectInfo is what pruning needs of an object: its name and the server's
// time of its last modification.
type objectInfo struct {
	Name    string
	ModTime time.Time
}

// retained returns the objects a pruner must keep whatever their age: the
// one the pointer cur names (nil: no pointer) and, until grace has passed
// since the pointer moved away from it (cur.Published, by the server's clock
// as now is), the one it named before, which readers may still be reading.
func retained(cur *Pointer, now time.Time, grace time.Duration) []string {
	if cur == nil {
		return nil
	}
	keep := []string{cur.Object}
	if cur.Previous != "" && now.Sub(cur.Published) < grace {
		keep = append(keep, cur.Previous)
	}
	return keep
}

// prunable returns, in the order given, the payloads of series name among
// objects that are not kept and were last modified more than grace before
// now. Objects under NAME/ that are not named as payloads are left alone.
func prunable(name string, objects []objectInfo, keep []string, now time.Time, grace time.Duration) []string {
	var out []string
	for _, o := range objects {
		if isPayload(name, o.Name) && !slices.Contains(keep, o.Name) && now.Sub(o.ModTime) > grace {
			out = append(out, o.Name)
		}
	}
	return out
}

// Prune removes the payloads of series name that the pointer does not keep
// (retained) and that were last modified more than grace ago, and returns
// their names. Ages are judged by the server's clock: the objects'
// modification times against the time the server reports at the start.
// Right before each removal the pointer is read again, so a payload it came
// to name meanwhile stays. grace must be at least Options.PublishWindow: an
// exporter names its payload within that window of its upload, so the
// payload is never old enough to be removed before the pointer names it.
// Several pruners may run at once.
func (s *Store) Prune(ctx context.Context, name string, grace time.Duration) (removed []string, err error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("objstore: %v", err)
	}
	if grace < s.opts.PublishWindow {
		return nil, fmt.Errorf("objstore: prune grace %v is shorter than the publish window %v", grace, s.opts.PublishWindow)
	}
	now, err := s.serverNow(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.obs.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, fmt.Errorf("objstore: listing %s: %w", s.bucket, err)
	}
	objects := make([]objectInfo, 0, len(list))
	for _, o := range list {
		objects = append(objects, objectInfo{Name: o.Name, ModTime: o.ModTime})
	}
	cur, err := s.readPointer(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, object := range prunable(name, objects, retained(cur, now, grace), now, grace) {
		if cur, err = s.readPointer(ctx, name); err != nil {
			return removed, err
		}
		if slices.Contains(retained(cur, now, grace), object) {
			continue
		}
		if err := s.obs.Delete(ctx, object); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return removed, fmt.Errorf("objstore: removing %s: %w", object, err)
		}
		removed = append(removed, object)
	}
	return removed, nil
}
