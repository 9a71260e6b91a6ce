package watch

import (
	"cmp"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// testMsg is a jetstream.Msg with a subject, a stream sequence and data:
// the inbox looks at nothing else.
type testMsg struct {
	jetstream.Msg
	subject  string
	seq      uint64
	data     []byte
	consumer string // "c_1" when empty
}

func (m testMsg) Subject() string { return m.subject }
func (m testMsg) Data() []byte    { return m.data }
func (m testMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Consumer: cmp.Or(m.consumer, "c_1"), Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}

// nth is the test's message i: subject si, stream sequence i+1.
func nth(i int) testMsg { return testMsg{subject: fmt.Sprintf("s%d", i), seq: uint64(i) + 1} }

// TestInboxOrderAndBound: messages come out in the order they went in,
// across takes; a put into a full inbox waits until the reader takes, and
// one waiting when the inbox closes returns and drops its message.
func TestInboxOrderAndBound(t *testing.T) {
	in := newInbox(3, 1<<20)
	const n = 50
	go func() {
		for i := range n {
			in.put(nth(i))
		}
	}()
	got := drain(t, in, n, 3)
	for i, d := range got {
		if want := fmt.Sprintf("s%d", i); d.msg.Subject() != want {
			t.Fatalf("message %d is %s, want %s", i, d.msg.Subject(), want)
		}
	}
	if in.received() != n {
		t.Fatalf("received() = %d, want %d", in.received(), n)
	}

	// Full: the fourth put waits, and close releases it without queueing.
	full := newInbox(3, 1<<20)
	for i := range 3 {
		full.put(nth(i))
	}
	returned := make(chan struct{})
	go func() { full.put(nth(3)); close(returned) }()
	select {
	case <-returned:
		t.Fatal("a put into a full inbox returned before anything was taken")
	case <-time.After(50 * time.Millisecond):
	}
	full.close()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not release a put waiting for room")
	}
	if left, _ := full.take(nil); len(left) != 3 {
		t.Fatalf("after close the inbox holds %d messages, want the 3 queued before", len(left))
	}
}

// TestInboxAcrossAReset: the old consumer's handler waits for room when
// the new consumer's (after a reset) delivers the message that follows;
// however the reader's take wakes them, the new consumer's message is
// never handed out, what is handed out is in order, and the inbox ends
// with ErrConsumerReset.
func TestInboxAcrossAReset(t *testing.T) {
	for round := range 200 {
		in := newInbox(1, 1<<20)
		in.put(nth(0))
		go in.put(nth(1)) // the old consumer: waits, the inbox is full
		for !waiting(in, 1) {
			time.Sleep(10 * time.Microsecond)
		}
		go in.put(testMsg{subject: "s2", seq: 3, consumer: "c_2"}) // the new one
		for !waiting(in, 2) {
			time.Sleep(10 * time.Microsecond)
		}
		var got []delivery
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for err == nil && time.Now().Before(deadline) {
			var took []delivery
			if took, err = in.take(nil); len(took) == 0 && err == nil {
				select {
				case <-in.ready:
				case <-time.After(10 * time.Millisecond):
				}
			}
			got = append(got, took...)
		}
		if !errors.Is(err, ErrConsumerReset) {
			t.Fatalf("round %d: the inbox ended with %v, want %v", round, err, ErrConsumerReset)
		}
		for i, d := range got {
			if want := fmt.Sprintf("s%d", i); d.msg.Subject() != want || d.md.Consumer != "c_1" {
				t.Fatalf("round %d: message %d is %s of %s, want %s of c_1", round, i, d.msg.Subject(), d.md.Consumer, want)
			}
		}
		in.close()
	}
}

// TestInboxFailsOutOfOrder: a message at or below the last stream sequence
// queued fails the inbox once what was queued is taken, and the payload
// bound holds any number of small messages.
func TestInboxFailsOutOfOrder(t *testing.T) {
	in := newInbox(10, 1<<20)
	in.put(nth(4))
	in.put(nth(2)) // a handler that lost the race to put
	in.put(nth(5)) // dropped: the inbox has failed
	got, err := in.take(nil)
	if len(got) != 1 || err != nil {
		t.Fatalf("take = %d messages, %v; want the one queued first and no error yet", len(got), err)
	}
	if got, err = in.take(nil); len(got) != 0 || !errors.Is(err, errOutOfOrder) {
		t.Fatalf("take = %d messages, %v; want none and %v", len(got), err, errOutOfOrder)
	}

	big := newInbox(100, 10)
	big.put(testMsg{subject: "a", seq: 1, data: make([]byte, 6)})
	big.put(testMsg{subject: "b", seq: 2, data: make([]byte, 6)}) // reaches the bound
	returned := make(chan struct{})
	go func() { big.put(testMsg{subject: "c", seq: 3, data: make([]byte, 6)}); close(returned) }()
	select {
	case <-returned:
		t.Fatal("a put past the inbox's bytes returned before anything was taken")
	case <-time.After(50 * time.Millisecond):
	}
	if got, _ := big.take(nil); len(got) != 2 {
		t.Fatalf("took %d, want 2", len(got))
	}
	<-returned
}

// TestInboxRefusesAResetConsumer: the first message of another consumer
// (an ordered consumer's reset) fails the inbox once what the first one
// delivered is taken, whatever comes after it.
func TestInboxRefusesAResetConsumer(t *testing.T) {
	in := newInbox(10, 1<<20)
	in.put(nth(0))
	in.put(nth(1))
	in.put(testMsg{subject: "s5", seq: 6, consumer: "c_2"})
	in.put(nth(2)) // the old consumer's handler, late: dropped
	got, err := in.take(nil)
	if len(got) != 2 || err != nil {
		t.Fatalf("take = %d messages, %v; want the first consumer's 2 and no error yet", len(got), err)
	}
	if got, err = in.take(nil); len(got) != 0 || !errors.Is(err, ErrConsumerReset) {
		t.Fatalf("take = %d messages, %v; want none and %v", len(got), err, ErrConsumerReset)
	}
}

// waiting says whether n puts wait in the inbox.
func waiting(in *inbox, n int) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.waiting == n
}

// drain takes n messages from in, never more than most at a time.
func drain(t *testing.T, in *inbox, n, most int) []delivery {
	t.Helper()
	var got, buf []delivery
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		var err error
		if buf, err = in.take(buf[:0]); err != nil {
			t.Fatal(err)
		}
		if len(buf) > most {
			t.Fatalf("took %d messages from an inbox of %d", len(buf), most)
		}
		got = append(got, buf...)
		if len(buf) == 0 {
			select {
			case <-in.ready:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if len(got) != n {
		t.Fatalf("took %d of %d messages", len(got), n)
	}
	return got
}
