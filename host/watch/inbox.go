package watch

import (
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// inbox hands messages from the consumer's goroutine (put, the Consume
// handler) to the watch's reader (take). A message costs a lock and an
// append; the reader takes everything queued at once and sleeps only when
// nothing is. It holds at most limit messages: put waits for room, which
// keeps the consumer from asking the server for more meanwhile (nats.go
// counts a message as pending until its handler returns).
type inbox struct {
	mu     sync.Mutex
	msgs   []jetstream.Msg
	limit  int
	closed bool
	total  uint64 // messages ever queued
	// ready has a token when msgs became non-empty since the reader last
	// looked; room has one when the reader took the queue.
	ready chan struct{}
	room  chan struct{}
	done  chan struct{} // closed by close
}

func newInbox(limit int) *inbox {
	return &inbox{
		msgs: make([]jetstream.Msg, 0, limit), limit: limit,
		ready: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{}),
	}
}

// put queues m, waiting while the inbox is full; after close it drops m.
func (in *inbox) put(m jetstream.Msg) {
	in.mu.Lock()
	for len(in.msgs) >= in.limit && !in.closed {
		in.mu.Unlock()
		select {
		case <-in.room:
		case <-in.done:
		}
		in.mu.Lock()
	}
	if in.closed {
		in.mu.Unlock()
		return
	}
	in.msgs = append(in.msgs, m)
	in.total++
	first := len(in.msgs) == 1
	in.mu.Unlock()
	if first {
		select {
		case in.ready <- struct{}{}:
		default:
		}
	}
}

// take returns everything queued, in order, and leaves buf (empty, and
// not the slice returned before) as the queue.
func (in *inbox) take(buf []jetstream.Msg) []jetstream.Msg {
	in.mu.Lock()
	msgs := in.msgs
	if len(msgs) == 0 {
		in.mu.Unlock()
		return buf
	}
	in.msgs = buf[:0]
	in.mu.Unlock()
	select {
	case in.room <- struct{}{}:
	default:
	}
	return msgs
}

// close ends the inbox: a put waiting for room returns, and later ones
// drop their message.
func (in *inbox) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.closed {
		in.closed = true
		close(in.done)
	}
}

// received is how many messages were ever queued.
func (in *inbox) received() uint64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.total
}
