package watch

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// inbox hands messages from the consumer's goroutines (put, the Consume
// handler) to the watch's reader (take). A message costs a lock and an
// append; the reader takes everything queued at once and sleeps only when
// nothing is. It holds at most limit messages and limitBytes of payload
// (one message whatever its size): put waits for room, which keeps the
// consumer from asking the server for more meanwhile (nats.go counts a
// message as pending until its handler returns).
//
// The inbox takes the messages of one consumer: the first whose message
// it queues. After an ordered consumer's reset, nats.go has already counted
// as delivered a message whose handler may not have reached put yet, and
// the new consumer starts after it; so the first message of another
// consumer fails the inbox (ErrConsumerReset) instead of being queued, and
// the fold starts again from the cursor it committed. A message whose
// stream sequence is not above the last one queued fails it too. nats.go
// calls one consumer's handler from one goroutine, so the puts of the
// consumer the inbox takes come in order; whatever order the puts of two
// consumers take, the second consumer's messages are never queued.
type inbox struct {
	mu         sync.Mutex
	msgs       []delivery
	bytes      int
	limit      int
	limitBytes int
	lastSeq    uint64 // stream sequence of the last message queued
	consumer   string // the consumer whose messages are queued
	total      uint64 // messages ever queued
	closed     bool
	err        error // why the consumer cannot go on; Next returns it

	waiting int       // puts waiting for room on cond
	cond    sync.Cond // signalled when the reader takes, or the inbox closes

	// ready has a token when msgs became non-empty, or err was set, since
	// the reader last looked.
	ready chan struct{}
}

// delivery is one message and its metadata, read once by put.
type delivery struct {
	msg jetstream.Msg
	md  *jetstream.MsgMetadata
	err error // the metadata could not be read
}

func newInbox(limit, limitBytes int) *inbox {
	in := &inbox{limit: limit, limitBytes: limitBytes, msgs: make([]delivery, 0, limit), ready: make(chan struct{}, 1)}
	in.cond.L = &in.mu
	return in
}

// put queues m, waiting for room; after close it drops m.
func (in *inbox) put(m jetstream.Msg) {
	d := delivery{msg: m}
	d.md, d.err = m.Metadata()
	in.mu.Lock()
	defer in.mu.Unlock()
	for !in.closed && in.full() {
		in.waiting++
		in.cond.Wait()
		in.waiting--
	}
	if in.closed || in.err != nil {
		return
	}
	if d.err == nil {
		switch seq := d.md.Sequence.Stream; {
		case in.consumer != "" && d.md.Consumer != in.consumer:
			in.fail(fmt.Errorf("%w (consumer %s after %s)", ErrConsumerReset, d.md.Consumer, in.consumer))
			return
		case seq <= in.lastSeq:
			in.fail(fmt.Errorf("%w: stream sequence %d delivered after %d", errOutOfOrder, seq, in.lastSeq))
			return
		default:
			in.consumer, in.lastSeq = d.md.Consumer, seq
		}
	}
	in.msgs = append(in.msgs, d)
	in.bytes += len(m.Data())
	in.total++
	if len(in.msgs) == 1 {
		in.signal()
	}
}

// full says whether a put must wait for the reader; mu held.
func (in *inbox) full() bool {
	return len(in.msgs) >= in.limit || (len(in.msgs) > 0 && in.bytes >= in.limitBytes)
}

// take returns everything queued, in order, leaving buf (emptied, and
// not the slice returned before) as the queue, and the inbox's error once
// nothing is queued.
func (in *inbox) take(buf []delivery) ([]delivery, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	msgs := in.msgs
	if len(msgs) == 0 {
		return buf, in.err
	}
	in.msgs, in.bytes = buf[:0], 0
	if in.waiting > 0 {
		in.cond.Broadcast()
	}
	return msgs, nil
}

// fail records why the consumer cannot go on; mu held. The first reason
// stays.
func (in *inbox) fail(err error) {
	if in.err == nil {
		in.err = err
		in.signal()
	}
}

// failed is fail for callers without mu: the consumer's error handler.
func (in *inbox) failed(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.fail(err)
}

func (in *inbox) signal() {
	select {
	case in.ready <- struct{}{}:
	default:
	}
}

// close ends the inbox: puts waiting return, and later ones drop their
// message. What is queued can still be taken.
func (in *inbox) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	in.cond.Broadcast()
}

// received is how many messages were ever queued.
func (in *inbox) received() uint64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.total
}
