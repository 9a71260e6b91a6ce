package objstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease is a series' export lease: while it lasts, no other holder gets it.
// The server ends it when its TTL passes; nobody compares wall clocks.
type Lease struct {
	Name   string // the series
	Holder string // who holds it: the caller when taken, else the other holder ("" when unknown)
	// Revision is the lease key's revision: what Release compares.
	Revision uint64
	// TTL is the lease's duration, in whole seconds as the server counts it.
	TTL time.Duration
	// Expires is when the lease ends at the earliest, by this process's
	// clock: when the request that took it was sent, plus TTL. Zero in a
	// lease that was not taken.
	Expires time.Time

	store *Store
}

// leaseValue is the lease key's value.
type leaseValue struct {
	Holder string    `json:"holder"`
	TTL    string    `json:"ttl"`
	Taken  time.Time `json:"taken"` // the holder's clock, for people
}

// Held reports whether the lease was taken by the caller and has not
// reached Expires.
func (l Lease) Held() bool { return l.store != nil && time.Now().Before(l.Expires) }

// TryLease takes series name's export lease for holder for ttl, which the
// server counts in whole seconds (at least 1s; a fraction is dropped). It
// returns false, and no error, when another holder has it, with that
// holder in the returned lease's Holder when it could be read. The lease
// is created with a per-message TTL on its key (nats-server 2.11 or
// later), so it ends on the server even if its holder dies; Release ends
// it early.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, bool, error) {
	if err := checkName(name); err != nil {
		return Lease{}, false, fmt.Errorf("objstore: %v", err)
	}
	if holder == "" {
		return Lease{}, false, errors.New("objstore: a lease needs a holder")
	}
	ttl = ttl.Truncate(time.Second)
	if ttl < time.Second {
		return Lease{}, false, fmt.Errorf("objstore: lease TTL %v, the server's minimum is 1s", ttl)
	}
	b, err := json.Marshal(leaseValue{Holder: holder, TTL: ttl.String(), Taken: time.Now().UTC()})
	if err != nil {
		return Lease{}, false, err
	}
	for range 3 {
		sent := time.Now()
		rev, err := s.leases.Create(ctx, name, b, jetstream.KeyTTL(ttl))
		held, err := leaseOutcome(err)
		if err != nil {
			return Lease{}, false, fmt.Errorf("objstore: taking the lease of %s: %w", name, err)
		}
		if held {
			return Lease{Name: name, Holder: holder, Revision: rev, TTL: ttl, Expires: sent.Add(ttl), store: s}, true, nil
		}
		e, err := s.leases.Get(ctx, name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // it ended meanwhile: try again
		}
		if err != nil {
			return Lease{}, false, fmt.Errorf("objstore: reading the lease of %s: %w", name, err)
		}
		other := Lease{Name: name, Revision: e.Revision()}
		var v leaseValue
		if json.Unmarshal(e.Value(), &v) == nil {
			other.Holder = v.Holder
			other.TTL, _ = time.ParseDuration(v.TTL)
		}
		return other, false, nil
	}
	return Lease{Name: name}, false, nil
}

// leaseOutcome reads the result of creating the lease key: held when it was
// created, not held (and no error) when it exists already.
func leaseOutcome(createErr error) (held bool, err error) {
	switch {
	case createErr == nil:
		return true, nil
	case errors.Is(createErr, jetstream.ErrKeyExists):
		return false, nil
	default:
		return false, createErr
	}
}

// releaseRevision is the revision Release requires the lease key to be at:
// the lease's own, so that a lease that expired and was taken again by
// someone else is left to them.
func releaseRevision(l Lease) uint64 { return l.Revision }

// Release ends the lease early if it is still the caller's: it deletes the
// lease key only at the lease's revision. It returns ErrLeaseLost when the
// lease had already ended (and perhaps was taken by another holder), which
// is harmless.
func (l Lease) Release(ctx context.Context) error {
	if l.store == nil || l.Revision == 0 {
		return errors.New("objstore: release of a lease that was not taken")
	}
	err := l.store.leases.Delete(ctx, l.Name, jetstream.LastRevision(releaseRevision(l)))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("%w: %s (held by %s at revision %d)", ErrLeaseLost, l.Name, l.Holder, l.Revision)
	default:
		return fmt.Errorf("objstore: releasing the lease of %s: %w", l.Name, err)
	}
}
