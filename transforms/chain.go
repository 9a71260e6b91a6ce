package transforms

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/sdk/abi"
)

// Module names a transform module of a chain and its configuration.
type Module struct {
	// Name identifies the module in errors; it is unique within a chain and
	// not part of the digest.
	Name string
	// Path is the .wasm file.
	Path string
	// Config is the module's TOML table, passed to slipstream_init as JSON.
	Config map[string]any
}

// Chain runs records through a sequence of modules, each with its own
// instance. A Chain is not safe for concurrent use: give each worker its own
// Chain from the shared Runtime.
type Chain struct {
	stages []*stage
	digest string
	closed bool
}

// stage is one module of a chain.
type stage struct {
	name   string
	rt     *Runtime
	code   *compilation
	config []byte
	inst   *instance // nil after a failure, until the next call
	ans    []answer  // scratch for batch answers
}

// NewChain reads, compiles (once per runtime, through the compilation cache)
// and checks each module, instantiates it and runs its init with its
// configuration. It fails, naming the module, when a module does not
// implement ABI v1 or refuses its configuration.
func (r *Runtime) NewChain(ctx context.Context, mods []Module) (*Chain, error) {
	c := &Chain{}
	digest := sha256.New()
	for _, m := range mods {
		s, code, err := r.newStage(ctx, m, c.stages)
		if err != nil {
			return nil, errors.Join(err, c.Close(ctx))
		}
		c.stages = append(c.stages, s)
		digest.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(code))))
		digest.Write(code)
		digest.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(s.config))))
		digest.Write(s.config)
	}
	c.digest = hex.EncodeToString(digest.Sum(nil))
	return c, nil
}

// newStage prepares module m of a chain whose earlier stages are before, and
// returns it with the module's bytes.
func (r *Runtime) newStage(ctx context.Context, m Module, before []*stage) (*stage, []byte, error) {
	if m.Name == "" {
		return nil, nil, fmt.Errorf("transform[%s]: module has no name", m.Path)
	}
	if slices.ContainsFunc(before, func(s *stage) bool { return s.name == m.Name }) {
		return nil, nil, fmt.Errorf("transform[%s]: name used twice in the chain", m.Name)
	}
	code, err := os.ReadFile(m.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("transform[%s]: %w", m.Name, err)
	}
	config, err := canonicalConfig(m.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("transform[%s]: config: %w", m.Name, err)
	}
	comp, err := r.compile(ctx, code)
	if err != nil {
		return nil, nil, fmt.Errorf("transform[%s]: %s: %w", m.Name, m.Path, err)
	}
	s := &stage{name: m.Name, rt: r, code: comp, config: config}
	if s.inst, err = r.instantiate(ctx, comp, config); err != nil {
		return nil, nil, fmt.Errorf("transform[%s]: %s: %w", m.Name, m.Path, err)
	}
	return s, code, nil
}

// canonicalConfig encodes a module's TOML table as the JSON passed to
// slipstream_init: keys sorted, compact, {} when absent.
func canonicalConfig(config map[string]any) ([]byte, error) {
	if config == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(config)
}

// Digest is the lowercase hex SHA-256 over every module's bytes and
// canonical configuration, in chain order (ABI.md, "Chain digest"). It
// depends on nothing else, so it is stable across processes and hosts.
func (c *Chain) Digest() string { return c.digest }

// Process runs each record through the chain in order; out[i] is the
// outcome of in[i]. A module failing on a record (trap, exit, deadline,
// memory limit, malformed answer, error it reports) sets that outcome's Err
// to a *GuestError; after anything but an error the module reported itself,
// the failing instance is replaced before the next record. Other records
// are unaffected. Process itself fails only when ctx ends, a record has an
// unknown Op, or a replacement instance cannot be made.
func (c *Chain) Process(ctx context.Context, in []sdk.Mutation) ([]Outcome, error) {
	if c.closed {
		return nil, errors.New("transforms: Process on a closed chain")
	}
	out := make([]Outcome, len(in))
	live := make([]int, len(in))
	for i := range in {
		if _, ok := abiOp(in[i].Op); !ok {
			return nil, fmt.Errorf("transforms: record %d (key %q) has unknown %v", i, in[i].Key, in[i].Op)
		}
		out[i] = Outcome{Record: in[i], Keep: true}
		live[i] = i
	}
	for _, s := range c.stages {
		if len(live) == 0 {
			break
		}
		if err := s.run(ctx, out, live); err != nil {
			return nil, err
		}
		live = slices.DeleteFunc(live, func(i int) bool { return !out[i].Keep })
	}
	// Rewrites matter only for records to fold; a failure names the key as
	// it entered the chain.
	for i := range out {
		if !out[i].Keep {
			out[i].Record = in[i]
			if ge, ok := out[i].Err.(*GuestError); ok {
				ge.Key = in[i].Key
			}
		}
	}
	return out, nil
}

// run passes the records out[i], i in idx, through the stage's module, in
// batches when the module exports slipstream_batch. A record the module
// drops or fails on gets Keep false.
func (s *stage) run(ctx context.Context, out []Outcome, idx []int) error {
	for len(idx) > 0 {
		inst, err := s.instance(ctx)
		if err != nil {
			return err
		}
		n := 1
		if inst.batch != nil {
			n, err = s.batch(ctx, inst, out, idx)
		} else {
			_, err = s.one(ctx, &out[idx[0]])
		}
		if err != nil {
			return err
		}
		idx = idx[n:]
	}
	return nil
}

// batch passes the first batch of records of idx through the module and
// returns how many it handled. A failed batch is replayed record by record
// on a fresh instance up to the record at fault, so that only that record
// fails; the caller resumes batching after it.
func (s *stage) batch(ctx context.Context, inst *instance, out []Outcome, idx []int) (int, error) {
	n, size := batchSize(out, idx)
	if cap(s.ans) < n {
		s.ans = make([]answer, n)
	}
	ans := s.ans[:n]
	result, err := inst.transformBatch(ctx, out, idx[:n], size, ans)
	if err == nil {
		for j, a := range ans {
			s.apply(&out[idx[j]], a, result)
		}
		return n, nil
	}
	s.discard(ctx)
	if !isFailure(err) {
		return 0, err
	}
	for j := range n {
		if failed, err := s.one(ctx, &out[idx[j]]); err != nil || failed {
			return j + 1, err
		}
	}
	return n, nil
}

// one passes o's record through slipstream_record and reports a failure.
// After any error the instance is discarded: a failed or interrupted call
// leaves it in an unknown state.
func (s *stage) one(ctx context.Context, o *Outcome) (failed bool, err error) {
	inst, err := s.instance(ctx)
	if err != nil {
		return false, err
	}
	a, result, err := inst.transform(ctx, &o.Record)
	if err != nil {
		s.discard(ctx)
		if isFailure(err) {
			o.Keep, o.Err = false, &GuestError{Module: s.name, Reason: err.Error()}
			return true, nil
		}
		return false, err
	}
	s.apply(o, a, result)
	return false, nil
}

// apply records the module's answer a, which refers to result, in o.
func (s *stage) apply(o *Outcome, a answer, result []byte) {
	switch a.verdict {
	case abi.VerdictDrop:
		o.Keep = false
	case abi.VerdictError:
		o.Keep, o.Err = false, &GuestError{Module: s.name, Reason: string(a.message.of(result))}
	case abi.VerdictRewrite:
		if a.flags&abi.FlagKey != 0 {
			o.Record.Key = a.key.of(result)
		}
		if a.flags&abi.FlagValue != 0 && o.Record.Op == sdk.OpPut {
			o.Record.Value = a.value.of(result)
		}
	}
}

// instance returns the stage's instance, making a new one after a failure.
func (s *stage) instance(ctx context.Context) (*instance, error) {
	if s.inst == nil {
		inst, err := s.rt.instantiate(ctx, s.code, s.config)
		if err != nil {
			return nil, fmt.Errorf("transform[%s]: replacing a failed instance: %w", s.name, err)
		}
		s.inst = inst
	}
	return s.inst, nil
}

// discard closes the instance after an error. Close's error is dropped:
// a trapped or exited module has nothing left worth reporting.
func (s *stage) discard(ctx context.Context) {
	_ = s.inst.close(ctx)
	s.inst = nil
}

func isFailure(err error) bool {
	var f *failure
	return errors.As(err, &f)
}

// Close closes the chain's instances. The chain cannot be used afterwards.
func (c *Chain) Close(ctx context.Context) error {
	c.closed = true
	var errs []error
	for _, s := range c.stages {
		if s.inst != nil {
			errs = append(errs, s.inst.close(ctx))
			s.inst = nil
		}
	}
	return errors.Join(errs...)
}
