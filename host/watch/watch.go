// Package watch reads a KV bucket's stream for one fold: a state-sync re-list
// (no cursor) or a resume at cursor+1, filtered by the fold's scope, decoded
// into puts and deletes with their revisions.
//
// It owns the expiry rules of ARCHITECTURE.md, invariant 5: NATS silently
// moves a start sequence below the stream's first sequence up to the first
// retained message, so Start checks the first sequence against the cursor
// before and after creating the consumer, and Check re-proves, while the
// watch runs, that retention has not overtaken what was delivered. It never
// decides what to do about an expired cursor; it reports ErrCursorExpired.
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/slipstreamkv/slipstream/internal/knobs"
	"github.com/slipstreamkv/slipstream/sdk"
)

// Errors the fold branches on.
var (
	// ErrCursorExpired: retention passed the cursor (or the delivered
	// frontier); resuming would silently skip history. Rebuild.
	ErrCursorExpired = errors.New("cursor expired: stream retention passed it")
	// ErrCursorAhead: the cursor is beyond the stream's last sequence, so
	// it belongs to another stream (the bucket was recreated). Rebuild.
	ErrCursorAhead = errors.New("cursor is ahead of the stream")
	// ErrCursorInvalid: a cursor of MaxUint64 cannot be resumed (cursor+1
	// would wrap to 0 and replay the world as if it were new).
	ErrCursorInvalid = errors.New("cursor is MaxUint64; refusing to wrap")
	// ErrIdentityChanged: the stream was deleted and recreated under the
	// watch. Its sequences mean something else now. Rebuild.
	ErrIdentityChanged = errors.New("stream was recreated")
	// ErrNoUpdate is returned by Next when its wait elapsed.
	ErrNoUpdate   = errors.New("no update within the wait")
	errOutOfOrder = errors.New("the consumer delivered out of order")
	// ErrConsumerReset is returned by Next, once everything queued before
	// it is handed out, when the ordered consumer was replaced (a
	// reconnect, a lost heartbeat, a deleted consumer): what the old one
	// delivered last may not have reached the watch, so the fold must
	// start again from the cursor it committed.
	ErrConsumerReset = errors.New("the consumer was reset")
	// ErrConsumerStopped is returned by Next when the consumer stopped
	// for good (the connection closed) and everything it delivered has
	// been handed out.
	ErrConsumerStopped = errors.New("the consumer stopped")
)

// Update is one decoded stream message: the mutation it makes (OpPut,
// OpDelete or OpPurge; the key is the subject after the bucket's prefix)
// and the consumer's backlog after it.
type Update struct {
	sdk.Mutation
	// Pending is how many messages in scope the consumer still had to
	// deliver after this one; 0 means caught up.
	Pending uint64
}

// Identity names the stream a fold folds: a bucket deleted and recreated has
// the same name and a new creation time.
type Identity struct {
	Stream  string
	Created time.Time
}

// Position is the stream's retained range, and how long the server keeps
// the markers it writes when keys expire (0: no such markers).
type Position struct {
	First, Last uint64
	MarkerTTL   time.Duration
}

// StreamName is the JetStream stream behind a KV bucket.
func StreamName(bucket string) string { return "KV_" + bucket }

// FilterSubjects maps key filters (NATS subject syntax over keys) to the
// stream's subjects. No filter means the whole bucket, and needs no filter
// subject at all: the stream holds only $KV.<bucket>.>, and the server
// creates an unfiltered consumer on a large stream far faster (0.5-1 ms
// against about 200 ms at 1M keys, measured by the benchmark).
func FilterSubjects(bucket string, filters []string) []string {
	if len(filters) == 0 {
		return nil
	}
	out := make([]string, len(filters))
	for i, f := range filters {
		out[i] = "$KV." + bucket + "." + f
	}
	return out
}

// Describe reads the identity and retained range of a bucket's stream.
func Describe(ctx context.Context, js jetstream.JetStream, bucket string) (Identity, Position, error) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	s, err := js.Stream(ctx, StreamName(bucket))
	if err != nil {
		return Identity{}, Position{}, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	info := s.CachedInfo()
	return Identity{Stream: info.Config.Name, Created: info.Created.UTC()},
		Position{First: info.State.FirstSeq, Last: info.State.LastSeq, MarkerTTL: info.Config.SubjectDeleteMarkerTTL}, nil
}

// CheckTimeout bounds Describe and one Check. A server that dies (or a
// cluster that loses its stream leader) with such a request in flight never
// answers it; the client's own request timeout (10 s by default) would keep
// a caught-up fold reporting itself synced all that while, folding nothing.
const CheckTimeout = 3 * time.Second

// pullBytes bounds each pull of the consumer (raised to the server's largest
// message when that is larger), and inboxBytes the payload the inbox holds
// (PullMaxMessages bounds both in messages).
const (
	pullBytes  = 16 << 20
	inboxBytes = 16 << 20
)

// StartTimeout bounds creating the consumer in Start.
const StartTimeout = 10 * time.Second

// errNoAnswer is a call into nats.go that did not return in time.
var errNoAnswer = errors.New("no answer")

// bounded runs fn for at most d (or until ctx ends). Some calls of the
// ordered consumer block past their context: while it resets, it holds its
// lock and retries creating the consumer for as long as the stream has no
// leader, and Info and Consume wait for that lock. A call that outlives d
// goes on in the background (and may not end soon: Start's StartGate keeps
// a fold from piling such calls up); abandon receives what it returns.
func bounded[T any](ctx context.Context, d time.Duration, fn func() (T, error), abandon func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var zero T
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	case <-timer.C:
	}
	go func() {
		if r := <-done; r.err == nil && abandon != nil {
			abandon(r.v)
		}
	}()
	if ctx.Err() != nil {
		return zero, ctx.Err()
	}
	return zero, fmt.Errorf("%w within %v (the consumer is being reset: the stream may have no leader)", errNoAnswer, d)
}

// consumerInfo is cons.Info bounded by d.
func consumerInfo(ctx context.Context, cons jetstream.Consumer, d time.Duration) (*jetstream.ConsumerInfo, error) {
	ictx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return bounded(ictx, d, func() (*jetstream.ConsumerInfo, error) { return cons.Info(ictx) }, nil)
}

// ResumeOK is the expiry rule: a resume at cursor+1 loses nothing only if the
// stream still holds cursor+1, i.e. first <= cursor+1. Saturating, so a
// cursor of MaxUint64 passes here and is refused by Start.
func ResumeOK(cursor, first uint64) bool {
	if cursor == math.MaxUint64 {
		return true
	}
	return first <= cursor+1
}

// Config is what to watch.
type Config struct {
	Bucket string
	// Filters are key filters in subject syntax; empty means every key.
	Filters []string
	// Cursor is the last applied revision; 0 means re-list (the last
	// message of every key, then live updates).
	Cursor uint64
	// PullMaxMessages is the consumer's read-ahead, and what the watch
	// holds that Next has not handed out; default 4096.
	PullMaxMessages int
	// NamePrefix names the server-side consumers, for operators.
	NamePrefix string
	// StartGate, when set, is a channel of capacity 1 shared by the watches
	// of one fold: at most one consumer creation of theirs is outstanding.
	// A creation Start gave up on (StartTimeout) may go on retrying inside
	// nats.go, and nothing can stop it; while it does, the next Start fails
	// at once instead of leaving one more such retry loop behind.
	StartGate chan struct{}
}

// Watch is one running consumer. It is used by one goroutine, but for
// Wake.
type Watch struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	cons   jetstream.Consumer
	cc     jetstream.ConsumeContext
	// in is where the consumer leaves messages for Next, and closed is
	// closed once the consumer has stopped for good.
	in     *inbox
	closed <-chan struct{}
	// taken is what Next last took from in; it hands out taken[next:]
	// before it takes again.
	taken []delivery
	next  int
	// wait is Next's one timer, reset for each wait.
	wait *time.Timer
	// wake has a token when Wake was called since Next last returned
	// ErrNoUpdate for it.
	wake   chan struct{}
	prefix string   // "$KV.<bucket>."
	scope  []string // the stream subjects the consumer delivers
	// Identity is the stream this watch reads, as found by Start.
	Identity Identity

	// InitialPending is the number of messages in scope when the consumer
	// was created: the size of a bootstrap.
	InitialPending uint64

	// guard is the frontier proven delivered at the previous Check: every
	// message in scope at or below it has been delivered.
	guard uint64
	// last is the stream's last sequence at the latest Check.
	last uint64
	// floor: no message in scope at or below it is owed to the fold, so
	// retention may take it undelivered (see startFloor). Never a bookmark.
	floor uint64
	// delivered is the highest revision handed out by Next.
	delivered uint64
	// lastConsumer and lastConsumerSeq identify the last message received,
	// to tell whether the consumer's reported position has reached us, and
	// handled is its stream sequence (Next handed it out, or skipped it).
	lastConsumer    string
	lastConsumerSeq uint64
	handled         uint64
	noBookmarks     bool
	// readErr is why the latest Check's read of the stream failed.
	readErr error
}

// Start checks the cursor against the stream and creates the consumer.
func Start(ctx context.Context, js jetstream.JetStream, cfg Config) (*Watch, error) {
	if cfg.Cursor == math.MaxUint64 {
		return nil, ErrCursorInvalid
	}
	off := knobs.WatchFrom(ctx) // defences a test turned off
	stream, err := js.Stream(ctx, StreamName(cfg.Bucket))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	sinfo := stream.CachedInfo()
	before := sinfo.State
	if err := CheckCursor(cfg.Cursor, before.FirstSeq, before.LastSeq); err != nil && !off.NoExpiryChecks {
		return nil, err
	}
	// Consumer names are unique per watch: a previous watch's consumer may
	// outlive it on the server until its inactivity threshold.
	prefix := nuid.Next()
	if cfg.NamePrefix != "" {
		prefix = cfg.NamePrefix + "_" + prefix
	}
	occ := jetstream.OrderedConsumerConfig{
		FilterSubjects: FilterSubjects(cfg.Bucket, cfg.Filters),
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		NamePrefix:     prefix,
		// The ordered consumer retries resets forever; the fold's own
		// supervisor decides when to give up.
		MaxResetAttempts:  -1,
		InactiveThreshold: 30 * time.Second,
	}
	scope := occ.FilterSubjects
	if len(scope) == 0 {
		scope = []string{"$KV." + cfg.Bucket + ".>"}
	}
	w := &Watch{js: js, stream: stream, prefix: "$KV." + cfg.Bucket + ".", scope: scope, noBookmarks: off.NoBookmarks,
		Identity: Identity{Stream: sinfo.Config.Name, Created: sinfo.Created.UTC()}}
	if cfg.Cursor > 0 {
		occ.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		occ.OptStartSeq = cfg.Cursor + 1
		w.guard, w.delivered, w.handled = cfg.Cursor, cfg.Cursor, cfg.Cursor
	} else if before.FirstSeq > 0 {
		// A re-list takes what the stream holds: nothing below the first
		// retained message is owed to the fold.
		w.guard = before.FirstSeq - 1
	}
	w.floor = startFloor(cfg.Cursor, sinfo.Config.MaxMsgsPerSubject, before.LastSeq)
	// The gate is taken before anything is created on the server, so that
	// a Start refused for an outstanding creation leaves nothing behind.
	release := func() {}
	if cfg.StartGate != nil {
		select {
		case cfg.StartGate <- struct{}{}:
			release = func() { <-cfg.StartGate }
		default:
			return nil, fmt.Errorf("bucket %s: consume: %w: an earlier watch's consumer creation is still outstanding",
				cfg.Bucket, errNoAnswer)
		}
	}
	cons, err := js.OrderedConsumer(ctx, StreamName(cfg.Bucket), occ)
	if err != nil {
		release()
		return nil, fmt.Errorf("bucket %s: create consumer: %w", cfg.Bucket, err)
	}
	w.cons = cons
	read := cfg.PullMaxMessages
	if read <= 0 {
		read = 4096
	}
	// The consumer hands each message to the inbox from its own goroutine,
	// and Next takes them in bulk: no timer or context per message, which
	// the iterator (Messages) costs on every Next. Each pull asks for at
	// most pullBytes, so that what nats.go holds while the inbox is full
	// stays under its slow-consumer limit (64 MiB a subscription).
	w.in = newInbox(read, inboxBytes)
	// A pull must have room for the largest message the server takes, or
	// the server refuses to send it and nats.go asks again without end.
	pull := pullBytes
	if nc := js.Conn(); nc != nil {
		pull = max(pull, int(nc.MaxPayload())+64<<10)
	}
	// Consume creates the consumer, retrying without end (and ignoring
	// ctx) while the stream has no leader: bounded, so that the fold stalls
	// with a reason and its next session tries afresh.
	cc, err := bounded(ctx, StartTimeout, func() (jetstream.ConsumeContext, error) {
		cc, err := cons.Consume(w.in.put, jetstream.PullMaxMessagesWithBytesLimit(read, pull),
			jetstream.ConsumeErrHandler(w.consumeError))
		release() // in time or abandoned, the creation is over
		return cc, err
	}, func(cc jetstream.ConsumeContext) { cc.Stop(); w.in.close() })
	if err != nil {
		return nil, fmt.Errorf("bucket %s: consume: %w", cfg.Bucket, err)
	}
	w.cc, w.closed = cc, cc.Closed()
	w.wait = time.NewTimer(time.Hour)
	w.wait.Stop()
	w.wake = make(chan struct{}, 1)
	// Re-check after creation: retention may have moved between the check
	// and the consumer's creation, and the server says nothing if it did.
	after, err := stream.Info(ctx)
	if err != nil {
		w.Stop()
		return nil, fmt.Errorf("bucket %s: stream info: %w", cfg.Bucket, err)
	}
	if cfg.Cursor > 0 && !ResumeOK(cfg.Cursor, after.State.FirstSeq) && !off.NoExpiryChecks {
		w.Stop()
		return nil, fmt.Errorf("%w (cursor %d, first sequence %d after creating the consumer)",
			ErrCursorExpired, cfg.Cursor, after.State.FirstSeq)
	}
	ci, err := consumerInfo(ctx, cons, StartTimeout)
	if err != nil {
		w.Stop()
		return nil, fmt.Errorf("bucket %s: consumer info: %w", cfg.Bucket, err)
	}
	// The consumer has been delivering since it was created: what it sent
	// was pending then. An ordered consumer that reset meanwhile counts
	// only from where its predecessor stopped, so what the inbox got is a
	// lower bound too. Zero means nothing in scope was there to deliver.
	w.InitialPending = max(ci.NumPending+ci.Delivered.Consumer, w.in.received())
	// A consumer that starts where this one was asked to is the first
	// (a reset's starts after what its predecessor delivered, and a
	// predecessor that delivered nothing started here too).
	first := ci.Config.DeliverPolicy == occ.DeliverPolicy && ci.Config.OptStartSeq == occ.OptStartSeq
	if w.InitialPending == 0 && first && !off.NoBookmarks {
		// Nothing in scope was there to deliver: no message at or below
		// the last sequence seen before creation is owed to the fold.
		w.guard = max(w.guard, before.LastSeq)
	}
	return w, nil
}

// startFloor is the floor of a watch: what the fold is owed nothing at
// or below, besides what it was delivered. history is the stream's messages
// per subject, last its last sequence before the consumer exists.
//
// When the bucket keeps one message per key, a re-list (cursor 0) is owed
// nothing up to last: each message retained then is its key's only one, and
// the fold is empty. If such a message goes before the consumer delivers it,
// either a newer message of its key (above last) replaced it and will be
// delivered, or the key is gone from the bucket and the fold, which holds
// nothing else of that key, lacks it too. Without this, a bucket rewriting
// its oldest keys faster than a bootstrap reads them would move the first
// sequence past the delivered frontier and rebuild the fold again and
// again. With more history per key, an ordered consumer that resets reads
// on by sequence and may deliver an older value of a key whose newer one
// retention then removes unseen, and a resume is owed everything after its
// cursor: the floor is 0 and the delivered frontier alone decides.
func startFloor(cursor uint64, history int64, last uint64) uint64 {
	if cursor == 0 && history == 1 {
		return last
	}
	return 0
}

// CheckCursor says whether a fold at cursor can follow a stream holding
// first to last: nil, or an error wrapping ErrCursorAhead (the cursor is
// past the stream's end: another stream's) or ErrCursorExpired (retention
// removed what comes after it). Cursor 0 is a re-list, always possible.
func CheckCursor(cursor, first, last uint64) error {
	switch {
	case cursor == 0:
		return nil
	case cursor > last:
		return fmt.Errorf("%w (cursor %d, stream last sequence %d)", ErrCursorAhead, cursor, last)
	case !ResumeOK(cursor, first):
		return fmt.Errorf("%w (cursor %d, first sequence %d)", ErrCursorExpired, cursor, first)
	}
	return nil
}

// Next returns the next update, waiting at most wait (ErrNoUpdate after).
// It returns ctx's error once ctx ends, and the watch is then stopped.
func (w *Watch) Next(ctx context.Context, wait time.Duration) (Update, error) {
	if err := ctx.Err(); err != nil {
		w.stopConsuming(true)
		return Update{}, err
	}
	armed := false
	defer func() {
		if armed {
			w.wait.Stop()
		}
	}()
	for {
		for w.next < len(w.taken) {
			d := w.taken[w.next]
			w.taken[w.next] = delivery{}
			w.next++
			if d.err != nil {
				return Update{}, fmt.Errorf("message without JetStream metadata: %w", d.err)
			}
			w.lastConsumer, w.lastConsumerSeq, w.handled = d.md.Consumer, d.md.Sequence.Consumer, d.md.Sequence.Stream
			u, ok := w.decode(d.msg, d.md)
			if !ok {
				continue
			}
			w.delivered = max(w.delivered, u.Revision)
			return u, nil
		}
		var err error
		if w.taken, err = w.in.take(w.taken[:0]); len(w.taken) > 0 {
			w.next = 0
			continue
		} else if err != nil {
			return Update{}, err
		}
		if !armed {
			w.wait.Reset(wait)
			armed = true
		}
		select {
		case <-w.in.ready:
		case <-w.wait.C:
			armed = false
			return Update{}, ErrNoUpdate
		case <-w.wake:
			return Update{}, ErrNoUpdate
		case <-ctx.Done():
			w.stopConsuming(true)
			return Update{}, ctx.Err()
		case <-w.closed:
			// Whatever the consumer delivered before it stopped comes first.
			if w.taken, err = w.in.take(w.taken[:0]); len(w.taken) > 0 {
				w.next = 0
				continue
			} else if err != nil {
				return Update{}, err
			}
			return Update{}, ErrConsumerStopped
		}
	}
}

// Wake makes Next, waiting with nothing to hand out, return ErrNoUpdate
// at once (or the next call that would wait, if none is waiting). Any
// goroutine may call it: the fold's applier does when it becomes free for
// a batch the reader holds.
func (w *Watch) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// consumeError hears the consumer's errors. A bad request ends its pulls
// for good, and the ordered consumer does not reset for it: the watch
// ends, and the fold starts another. The ordered consumer handles the
// others itself, resetting where it must.
func (w *Watch) consumeError(_ jetstream.ConsumeContext, err error) {
	if errors.Is(err, jetstream.ErrBadRequest) {
		w.in.failed(fmt.Errorf("consumer: %w", err))
	}
}

// stopConsuming stops the consumer's deliveries; a delivery waiting for
// room in the inbox is dropped.
// Next does not wait for it (async): stopping takes the ordered consumer's
// lock, which a reset holds while it retries with no stream leader. nats.go
// marks the consumer stopped before it takes that lock, so a reset's retry
// creates no consumer after it.
func (w *Watch) stopConsuming(async bool) {
	w.in.close()
	if async {
		go w.cc.Stop()
	} else {
		w.cc.Stop()
	}
}

func (w *Watch) decode(msg jetstream.Msg, md *jetstream.MsgMetadata) (Update, bool) {
	return decode(w.prefix, msg.Subject(), msg.Headers(), msg.Data(), md.Sequence.Stream, md.NumPending)
}

// decode reads one message of the stream whose subjects are prefix+key. A
// message outside the prefix, or with no key after it, is not an update.
func decode(prefix, subject string, h nats.Header, data []byte, seq, pending uint64) (Update, bool) {
	if !strings.HasPrefix(subject, prefix) || len(subject) == len(prefix) {
		return Update{}, false
	}
	u := Update{Mutation: sdk.Mutation{Op: sdk.OpPut, Key: keyBytes(subject[len(prefix):]), Value: data, Revision: seq}, Pending: pending}
	if len(h) > 0 {
		u.Op = Operation(h)
		if u.Op != sdk.OpPut {
			u.Value = nil
		}
	}
	return u, true
}

// keyBytes is key as bytes without a copy: the subject string the client
// decoded holds them already, and from here to the store's Apply every
// reader only reads a key (sdk.Store.Apply's contract), which is what makes
// sharing the string's bytes safe. The wire to the plugin is their first
// copy.
func keyBytes(key string) []byte {
	return unsafe.Slice(unsafe.StringData(key), len(key))
}

// Operation reads the KV operation from headers, including the limit markers
// the server writes when a key is removed by TTL or purge.
func Operation(h nats.Header) sdk.Op {
	switch h.Get("KV-Operation") {
	case "DEL":
		return sdk.OpDelete
	case "PURGE":
		return sdk.OpPurge
	}
	switch h.Get("Nats-Marker-Reason") {
	case "MaxAge", "Purge":
		return sdk.OpPurge
	case "Remove":
		return sdk.OpDelete
	}
	return sdk.OpPut
}

// Check is the live floor guard, run periodically. It proves that nothing in
// scope above the frontier proven at the previous Check was removed from the
// stream before the consumer could deliver it, and advances the frontier:
// to the highest delivered revision or, when the consumer is caught up, to
// the stream's last sequence (a bookmark).
//
// Four reads, in this order:
//  1. stream info: the last sequence L;
//  2. the stream itself, from its leader: the first message in scope above
//     the previous frontier and the highest revision delivered (owedFrom).
//     A bookmark stays below it: the consumer's own count cannot prove that
//     nothing is owed, as nats-server counts a stored message toward its
//     consumers in a goroutine of its own, so consumer info may say
//     "nothing pending" about a message step 1 already counted. A bookmark
//     past it would commit a cursor past a change the fold has not applied
//     (readers told the change is in, and after a crash the change
//     skipped);
//  3. consumer info: nothing pending in scope, and every message the
//     consumer sent has been received here. Read after step 2: a message in
//     scope at or below L that step 2 did not find was removed before it,
//     so the consumer either sent it before (and step 3 sees it unreceived)
//     or never will;
//  4. stream info again: the first sequence F. F <= frontier+1 proves that
//     nothing above the previous frontier was removed up to now, so nothing
//     was removed before the consumer reached it.
//
// It returns the bookmark: a cursor the fold may commit once everything it
// received is applied.
func (w *Watch) Check(ctx context.Context) (bookmark uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	before, err := w.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	// Everything in scope up to the previous frontier is proven delivered:
	// a quiet filtered fold reads only what the stream took since.
	var owedFrom uint64
	proven := !w.noBookmarks
	w.readErr = nil
	if from := max(w.guard, w.delivered) + 1; proven && before.State.LastSeq >= from {
		// Its own share of the time, so that the reads after it still
		// have theirs when it times out.
		rctx, rcancel := context.WithTimeout(ctx, CheckTimeout/3)
		owedFrom, w.readErr = w.firstInScope(rctx, from)
		rcancel()
		proven = w.readErr == nil // no bookmark without the proof
	}
	ci, err := consumerInfo(ctx, w.cons, CheckTimeout)
	if err != nil {
		return 0, fmt.Errorf("consumer info: %w", err)
	}
	caughtUp := proven && ci.NumPending == 0 && w.tookAllSent(ci)
	after, err := w.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	w.last = after.State.LastSeq
	for _, info := range []*jetstream.StreamInfo{before, after} {
		if !info.Created.UTC().Equal(w.Identity.Created) {
			return 0, fmt.Errorf("%w (created %s, watch began on the stream created %s)", ErrIdentityChanged,
				info.Created.UTC().Format(time.RFC3339Nano), w.Identity.Created.Format(time.RFC3339Nano))
		}
	}
	frontier, err := Advance(w.guard, w.floor, w.delivered, caughtUp, owedFrom, before.State.LastSeq, after.State.FirstSeq)
	if err != nil {
		return 0, err
	}
	w.guard = frontier
	return frontier, nil
}

// tookAllSent says whether Next has handed out everything that the
// consumer ci describes sent, and everything its predecessors sent: after
// a reset the ordered consumer starts at the stream sequence after the
// last message the one before delivered, which may still be waiting in
// the inbox while the new one has sent nothing.
func (w *Watch) tookAllSent(ci *jetstream.ConsumerInfo) bool {
	if ci.Delivered.Consumer == 0 {
		return ci.Config.OptStartSeq == 0 || ci.Config.OptStartSeq <= w.handled+1
	}
	return ci.Name == w.lastConsumer && ci.Delivered.Consumer == w.lastConsumerSeq
}

// BookmarkError is why the latest Check could not read the stream for a
// bookmark (nil when it could): the fold then commits no bookmark, and a
// filtered fold whose keys stay quiet falls behind the stream.
func (w *Watch) BookmarkError() error { return w.readErr }

// msgGetRequest asks JetStream's STREAM.MSG.GET for the first message at
// or after Seq whose subject matches NextFor.
type msgGetRequest struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
}

// msgGetResponse is its answer: the message, or an error.
type msgGetResponse struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Message *struct {
		Sequence uint64 `json:"seq"`
	} `json:"message"`
}

// apiPrefix is the subject prefix of o's JetStream API requests, as nats.go
// makes it (it keeps its own unexported).
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix == "":
		return jetstream.DefaultAPIPrefix
	case strings.HasSuffix(o.APIPrefix, "."):
		return o.APIPrefix
	default:
		return o.APIPrefix + "."
	}
}

// errCodeNoMessage is JetStream's error code for "no message found".
const errCodeNoMessage = 10037

// firstInScope returns the sequence of the first message in the watch's
// scope at or after seq that the stream holds, or 0 when it holds none. It
// asks the stream's leader through STREAM.MSG.GET, not the direct get that
// nats.go uses for a bucket: any replica, or a mirror, may answer a direct
// get, and one that lags would not know the message.
func (w *Watch) firstInScope(ctx context.Context, seq uint64) (uint64, error) {
	subject := apiPrefix(w.js.Options()) + "STREAM.MSG.GET." + w.Identity.Stream
	var first uint64
	for _, subj := range w.scope {
		req, err := json.Marshal(msgGetRequest{Seq: seq, NextFor: subj})
		if err != nil {
			return 0, err
		}
		msg, err := w.js.Conn().RequestWithContext(ctx, subject, req)
		if err != nil {
			return 0, fmt.Errorf("next message of %s from %d: %w", subj, seq, err)
		}
		var resp msgGetResponse
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return 0, fmt.Errorf("next message of %s from %d: %w", subj, seq, err)
		}
		switch {
		case resp.Error != nil && resp.Error.ErrCode == errCodeNoMessage:
		case resp.Error != nil:
			return 0, fmt.Errorf("next message of %s from %d: %s (code %d)", subj, seq, resp.Error.Description, resp.Error.ErrCode)
		case resp.Message == nil:
			return 0, fmt.Errorf("next message of %s from %d: an answer with neither message nor error", subj, seq)
		case first == 0 || resp.Message.Sequence < first:
			first = resp.Message.Sequence
		}
	}
	return first, nil
}

// StreamLast is the stream's last sequence as the latest Check read it (0
// before the first).
func (w *Watch) StreamLast() uint64 { return w.last }

// Advance is the floor guard's decision, kept pure so it can be model
// tested. guard is the frontier proven at the previous check; floor is the
// watch's floor (startFloor); delivered is the highest revision handed out
// since; caughtUp says the consumer reported nothing pending after
// lastBefore was read and everything it sent was received; owedFrom is the
// first message in scope above guard and delivered that the stream held
// after that (0: none), which the consumer's report may not count yet;
// firstAfter is the first sequence read after that. It returns the new frontier, or
// ErrCursorExpired when retention may have removed a message in scope,
// above the floor, before the consumer reached it. The frontier is a
// position the fold may commit as its cursor: it never includes the floor.
func Advance(guard, floor, delivered uint64, caughtUp bool, owedFrom, lastBefore, firstAfter uint64) (uint64, error) {
	if !ResumeOK(max(guard, floor), firstAfter) {
		return 0, fmt.Errorf("%w (first sequence %d passed %d, the frontier delivered or not owed, while watching)",
			ErrCursorExpired, firstAfter, max(guard, floor))
	}
	frontier := max(guard, delivered)
	if caughtUp {
		bookmark := lastBefore
		if owedFrom > 0 {
			bookmark = min(bookmark, owedFrom-1)
		}
		frontier = max(frontier, bookmark)
	}
	return frontier, nil
}

// Stop ends the watch and deletes its server-side consumer, so that
// restarts do not leave consumers behind until their inactivity threshold.
func (w *Watch) Stop() {
	if w.cc != nil {
		w.stopConsuming(false)
	}
	if w.cons == nil {
		return
	}
	if info := w.cons.CachedInfo(); info != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = w.js.DeleteConsumer(ctx, w.stream.CachedInfo().Config.Name, info.Name)
	}
}
