package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
)

// The concurrent-reads series: batch g writes value tag g to every "a/" key
// and, when g is even, to every "b/" key; odd batches delete the "b/" keys.
// A read that mixes two batches shows as two tags, or as a count of keys no
// batch leaves.
const (
	tornA       = 64
	tornB       = 16
	tornBatches = 200
	tornKeyLen  = len("a/00")
	tornValLen  = len("tag=00000000;") + 20
	readPause   = 100 * time.Microsecond
)

func tornValue(g uint64) []byte {
	return fmt.Appendf(nil, "tag=%08d;%s", g, bytes.Repeat([]byte("."), 20))
}

func tornBatch(g uint64) *sdk.Batch {
	b := &sdk.Batch{Cursor: g}
	for i := range tornA {
		b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: fmt.Appendf(nil, "a/%02d", i), Value: tornValue(g), Revision: g})
	}
	for i := range tornB {
		k := fmt.Appendf(nil, "b/%02d", i)
		if g%2 == 0 {
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpPut, Key: k, Value: tornValue(g), Revision: g})
		} else {
			b.Mutations = append(b.Mutations, sdk.Mutation{Op: sdk.OpDelete, Key: k})
		}
	}
	return b
}

// tornTag is the batch an entry was written by, checked against its revision.
func tornTag(e sdk.Entry) (uint64, error) {
	v := e.Value
	if len(v) != tornValLen || !bytes.HasPrefix(v, []byte("tag=")) {
		return 0, fmt.Errorf("key %s has value %s, which no batch wrote", show(e.Key), show(v))
	}
	g, err := strconv.ParseUint(string(v[4:12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("key %s has value %s, which no batch wrote", show(e.Key), show(v))
	}
	if e.Revision != g {
		return 0, fmt.Errorf("key %s has the value of batch %d with the revision of batch %d", show(e.Key), g, e.Revision)
	}
	return g, nil
}

// checkTorn checks that one Scan saw exactly one batch's keys.
func checkTorn(entries []sdk.Entry) error {
	var tag uint64
	na, nb := 0, 0
	for i, e := range entries {
		g, err := tornTag(e)
		if err != nil {
			return err
		}
		if i == 0 {
			tag = g
		} else if g != tag {
			return fmt.Errorf("one Scan returned keys of batch %d and of batch %d", tag, g)
		}
		if e.Key[0] == 'a' {
			na++
		} else {
			nb++
		}
	}
	wantB := 0
	if tag%2 == 0 {
		wantB = tornB
	}
	if na != tornA || nb != wantB {
		return fmt.Errorf("one Scan returned %d a/ and %d b/ keys of batch %d, which leaves %d and %d", na, nb, tag, tornA, wantB)
	}
	return nil
}

func caseConcurrentReads(h *harness) {
	s := h.open(h.dir())
	s.apply(tornBatch(0))
	var (
		stop  = make(chan struct{})
		errs  = make(chan error, 8)
		wg    sync.WaitGroup
		reads atomic.Int64
	)
	reader := func(name string, read func(rnd *rand.Rand) error) {
		rnd := rand.New(rand.NewPCG(h.rnd.Uint64(), 0))
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := read(rnd); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
					return
				}
				reads.Add(1)
				// Pace in-process readers, which would otherwise starve the
				// writer of CPU; a plugin's round trip is slower anyway.
				time.Sleep(readPause)
			}
		})
	}
	scanAllKeys := func(*rand.Rand) error {
		entries, err := scanAll(h.ctx, s, sdk.Range{})
		if err != nil {
			return err
		}
		return checkTorn(entries)
	}
	reader("Scan", scanAllKeys)
	reader("Scan", scanAllKeys)
	reader("Scan of b/", func(*rand.Rand) error {
		entries, err := scanAll(h.ctx, s, sdk.Range{Prefix: []byte("b/")})
		if err != nil {
			return err
		}
		for _, e := range entries {
			g, err := tornTag(e)
			if err != nil {
				return err
			}
			if g%2 != 0 || len(entries) != tornB {
				return fmt.Errorf("saw %d b/ keys, one of batch %d; want all %d of an even batch or none", len(entries), g, tornB)
			}
		}
		return nil
	})
	reader("Get", func(rnd *rand.Rand) error {
		key := fmt.Appendf(nil, "a/%02d", rnd.IntN(tornA))
		if rnd.IntN(2) == 0 {
			key = fmt.Appendf(nil, "b/%02d", rnd.IntN(tornB))
		}
		e, err := s.Get(h.ctx, key)
		if errors.Is(err, sdk.ErrNotFound) && key[0] == 'b' {
			return nil
		}
		if err != nil {
			return err
		}
		e.Key = key
		_, err = tornTag(e)
		return err
	})
	reader("Stats", func(*rand.Rand) error {
		st, err := s.Stats(h.ctx)
		if err != nil {
			return err
		}
		per := uint64(tornKeyLen + tornValLen)
		if (st.Keys != tornA && st.Keys != tornA+tornB) || st.Bytes != st.Keys*per {
			return fmt.Errorf("%d keys, %d bytes; every batch leaves %d or %d keys of %d bytes each", st.Keys, st.Bytes, tornA, tornA+tornB, per)
		}
		return nil
	})
	var applyErr error
	for g := uint64(1); g <= tornBatches && applyErr == nil && len(errs) == 0; g++ {
		applyErr = s.Apply(h.ctx, tornBatch(g))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		h.Errorf("a read during Apply saw part of a batch: %v", err)
	}
	if applyErr != nil {
		h.Fatalf("Apply: %v", applyErr)
	}
	h.Logf("%d reads ran during %d applies", reads.Load(), tornBatches)
	s.close()
}
