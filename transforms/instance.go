package transforms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/slipstreamkv/slipstream/sdk"
	"github.com/slipstreamkv/slipstream/sdk/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// failure is a guest failure after which the instance's state is unknown:
// the instance is discarded and the reason reported as a GuestError.
type failure struct{ reason string }

func (f *failure) Error() string { return f.reason }

func malformed(what string) error { return &failure{"malformed answer: " + what} }

// instance is one instantiated module with its configuration applied. It
// is used by one goroutine at a time.
type instance struct {
	mod                                api.Module
	mem                                api.Memory
	alloc, output, init, record, batch api.Function
	timeout                            time.Duration
	memoryLimit                        uint32 // pages
	stack                              []uint64
	buf, bufLen                        uint32 // input buffer from slipstream_alloc
	stderr                             stderrHead
}

// minInputBuffer keeps small requests from reallocating the input buffer
// one by one.
const minInputBuffer = 64 << 10

// fixedWalltime is the wall clock guests see: 2000-01-01T00:00:00Z.
func fixedWalltime() (sec int64, nsec int32) { return 946684800, 0 }

// steppingNanotime returns a monotonic clock that starts at 0 and advances
// 1 ms per reading, so that guest sleeps and timers terminate.
func steppingNanotime() sys.Nanotime {
	var t int64
	return func() int64 {
		now := t
		t += int64(time.Millisecond)
		return now
	}
}

// zeroes is the randomness guests see.
type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// instantiate makes an instance of c and runs slipstream_init with config.
// A refused configuration or a failing guest is an error.
func (r *Runtime) instantiate(ctx context.Context, c *compilation, config []byte) (*instance, error) {
	in := &instance{
		timeout:     r.opts.CallTimeout,
		memoryLimit: r.opts.MemoryLimitPages,
		stack:       make([]uint64, 6),
	}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions("_initialize").
		WithStderr(&in.stderr).
		WithWalltime(fixedWalltime, 1).
		WithNanotime(steppingNanotime(), 1).
		WithRandSource(zeroes{})
	ictx, cancel := context.WithTimeout(ctx, in.timeout)
	mod, err := r.rt.InstantiateModule(ictx, c.mod, cfg)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("instantiate: %w", in.classify(err))
	}
	in.mod = mod
	in.mem = mod.Memory()
	in.alloc = mod.ExportedFunction(exportAlloc)
	in.output = mod.ExportedFunction(exportOutput)
	in.init = mod.ExportedFunction(exportInit)
	in.record = mod.ExportedFunction(exportRecord)
	if c.hasBatch {
		in.batch = mod.ExportedFunction(exportBatch)
	}
	if err := in.configure(ctx, config); err != nil {
		return nil, errors.Join(fmt.Errorf("init: %w", err), in.close(ctx))
	}
	return in, nil
}

// configure runs slipstream_init.
func (in *instance) configure(ctx context.Context, config []byte) error {
	ptr, err := in.write(ctx, config)
	if err != nil {
		return err
	}
	in.stack[0], in.stack[1] = api.EncodeU32(ptr), api.EncodeU32(uint32(len(config)))
	if err := in.call(ctx, in.init, in.stack); err != nil {
		return err
	}
	switch status := api.DecodeU32(in.stack[0]); status {
	case abi.StatusOK:
		return nil
	case abi.StatusError:
		msg, err := in.message(ctx)
		if err != nil {
			return err
		}
		return errors.New(msg)
	default:
		return malformed("init status " + strconv.FormatUint(uint64(status), 10) + " is not defined by ABI v1")
	}
}

// transform runs slipstream_record on r and returns the answer with the
// output it refers to.
func (in *instance) transform(ctx context.Context, r *sdk.Mutation) (answer, []byte, error) {
	value := guestValue(r)
	n := uint64(len(r.Key)) + uint64(len(value))
	if n > math.MaxUint32 {
		return answer{}, nil, &failure{"record of " + strconv.FormatUint(n, 10) + " bytes does not fit in guest memory"}
	}
	ptr, view, err := in.buffer(ctx, uint32(n))
	if err != nil {
		return answer{}, nil, err
	}
	copy(view[copy(view, r.Key):], value)
	s := in.stack
	op, _ := abiOp(r.Op) // Process checked it
	s[0] = api.EncodeU32(uint32(op))
	s[1], s[2] = api.EncodeU32(ptr), api.EncodeU32(uint32(len(r.Key)))
	s[3], s[4] = api.EncodeU32(ptr+uint32(len(r.Key))), api.EncodeU32(uint32(len(value)))
	s[5] = r.Revision
	if err := in.call(ctx, in.record, s); err != nil {
		return answer{}, nil, err
	}
	v := api.DecodeU32(s[0])
	switch v {
	case abi.VerdictKeep, abi.VerdictDrop:
		return answer{verdict: v}, nil, nil
	case abi.VerdictRewrite, abi.VerdictError:
	default:
		return answer{}, nil, malformed("verdict " + strconv.FormatUint(uint64(v), 10) + " is not defined by ABI v1")
	}
	out, err := in.readOutput(ctx)
	if err != nil {
		return answer{}, nil, err
	}
	a, err := decodeOne(v, out)
	return a, bytes.Clone(out), err
}

// transformBatch runs slipstream_batch on the records out[i], i in idx,
// which batchSize sized, fills ans and returns the output they refer to.
func (in *instance) transformBatch(ctx context.Context, out []Outcome, idx []int, size uint64, ans []answer) ([]byte, error) {
	if size > math.MaxUint32 {
		return nil, &failure{"batch of " + strconv.FormatUint(size, 10) + " bytes does not fit in guest memory"}
	}
	ptr, view, err := in.buffer(ctx, uint32(size))
	if err != nil {
		return nil, err
	}
	encodeBatch(view, out, idx)
	in.stack[0], in.stack[1] = api.EncodeU32(ptr), api.EncodeU32(uint32(size))
	if err := in.call(ctx, in.batch, in.stack); err != nil {
		return nil, err
	}
	status := api.DecodeU32(in.stack[0])
	switch status {
	case abi.StatusOK:
	case abi.StatusError:
		msg, err := in.message(ctx)
		if err != nil {
			return nil, err
		}
		return nil, &failure{"batch failed: " + msg}
	default:
		return nil, malformed("batch status " + strconv.FormatUint(uint64(status), 10) + " is not defined by ABI v1")
	}
	result, err := in.readOutput(ctx)
	if err != nil {
		return nil, err
	}
	return decodeBatchOutput(result, ans)
}

// message reads the error message of a call that returned the error status.
func (in *instance) message(ctx context.Context) (string, error) {
	out, err := in.readOutput(ctx)
	if err != nil {
		return "", err
	}
	a, err := decodeOne(abi.VerdictError, out) // an error status has an error body
	if err != nil {
		return "", err
	}
	return string(a.message.of(out)), nil
}

// readOutput calls slipstream_output and returns a view of the output,
// valid until the next call into the guest.
func (in *instance) readOutput(ctx context.Context) ([]byte, error) {
	if err := in.call(ctx, in.output, in.stack); err != nil {
		return nil, err
	}
	ptr, n := uint32(in.stack[0]>>32), uint32(in.stack[0])
	view, ok := in.mem.Read(ptr, n)
	if !ok {
		return nil, malformed(fmt.Sprintf("output [%d, %d+%d) is outside guest memory of %d bytes", ptr, ptr, n, in.mem.Size()))
	}
	return view, nil
}

// write copies b into the input buffer and returns its address.
func (in *instance) write(ctx context.Context, b []byte) (uint32, error) {
	ptr, view, err := in.buffer(ctx, uint32(len(b)))
	if err == nil {
		copy(view, b)
	}
	return ptr, err
}

// buffer returns the address of n bytes of input buffer and a view of
// them, asking the guest for a larger buffer when needed. The view is valid
// until the next call into the guest.
func (in *instance) buffer(ctx context.Context, n uint32) (uint32, []byte, error) {
	if n > in.bufLen || in.buf == 0 {
		size := max(n, minInputBuffer)
		in.stack[0] = api.EncodeU32(size)
		if err := in.call(ctx, in.alloc, in.stack); err != nil {
			return 0, nil, err
		}
		in.buf, in.bufLen = api.DecodeU32(in.stack[0]), size
		if in.buf == 0 {
			in.bufLen = 0
			return 0, nil, &failure{"slipstream_alloc(" + strconv.FormatUint(uint64(size), 10) + ") returned 0"}
		}
		if _, ok := in.mem.Read(in.buf, size); !ok {
			ptr := in.buf
			in.buf, in.bufLen = 0, 0
			return 0, nil, malformed(fmt.Sprintf("slipstream_alloc(%d) returned %d, outside guest memory of %d bytes", size, ptr, in.mem.Size()))
		}
	}
	view, _ := in.mem.Read(in.buf, n)
	return in.buf, view, nil
}

// call calls fn under the per-call deadline. It returns the caller's
// context error when that context ends, and a *failure for anything the
// guest did.
func (in *instance) call(ctx context.Context, fn api.Function, stack []uint64) error {
	in.stderr.reset()
	cctx, cancel := context.WithTimeout(ctx, in.timeout)
	err := fn.CallWithStack(cctx, stack)
	cancel()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return in.classify(err)
}

// classify turns an error of a guest call into a failure whose reason says
// what happened, with the guest's memory use when it is at its limit and
// the first line it wrote to stderr.
func (in *instance) classify(err error) error {
	var reason string
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded:
		return &failure{"call exceeded the " + in.timeout.String() + " deadline"}
	case errors.As(err, &exit):
		reason = "exited with code " + strconv.FormatUint(uint64(exit.ExitCode()), 10)
	default:
		first, _, _ := strings.Cut(err.Error(), "\n")
		reason = "trap: " + first
	}
	if in.mem != nil && in.mem.Size()/65536 >= in.memoryLimit {
		reason += "; memory limit of " + strconv.FormatUint(uint64(in.memoryLimit), 10) + " pages reached"
	}
	if line := in.stderr.firstLine(); line != "" {
		reason += "; stderr: " + strconv.Quote(line)
	}
	return &failure{reason}
}

// close closes the instance's module.
func (in *instance) close(ctx context.Context) error {
	return in.mod.Close(ctx)
}

// stderrHead keeps the beginning of what a guest writes to stderr during
// one call, to explain failures (a Go panic message, a fatal runtime error).
type stderrHead struct {
	buf [512]byte
	n   int
}

// maxStderrLine bounds the stderr line quoted in a failure reason.
const maxStderrLine = 200

func (s *stderrHead) Write(p []byte) (int, error) {
	s.n += copy(s.buf[s.n:], p)
	return len(p), nil
}

func (s *stderrHead) reset() { s.n = 0 }

// firstLine returns the first non-blank line written since the last reset.
func (s *stderrHead) firstLine() string {
	for line := range bytes.Lines(s.buf[:s.n]) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return string(line[:min(len(line), maxStderrLine)])
		}
	}
	return ""
}
