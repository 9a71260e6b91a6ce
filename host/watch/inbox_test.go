package watch

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// testMsg is a jetstream.Msg that only has a subject: the inbox carries
// messages without looking at them.
type testMsg struct {
	jetstream.Msg
	subject string
}

func (m testMsg) Subject() string { return m.subject }

// TestInboxOrderAndBound: messages come out in the order they went in,
// across takes; a put into a full inbox waits until the reader takes, and
// one waiting when the inbox closes returns and drops its message.
func TestInboxOrderAndBound(t *testing.T) {
	in := newInbox(3)
	const n = 50
	go func() {
		for i := range n {
			in.put(testMsg{subject: fmt.Sprintf("s%d", i)})
		}
	}()
	var got []jetstream.Msg
	var buf []jetstream.Msg
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		buf = in.take(buf[:0])
		if len(buf) > 3 {
			t.Fatalf("took %d messages from an inbox of 3", len(buf))
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
	for i, m := range got {
		if want := fmt.Sprintf("s%d", i); m.Subject() != want {
			t.Fatalf("message %d is %s, want %s", i, m.Subject(), want)
		}
	}
	if in.received() != n {
		t.Fatalf("received() = %d, want %d", in.received(), n)
	}

	// Full: the fourth put waits, and close releases it without queueing.
	full := newInbox(3)
	for i := range 3 {
		full.put(testMsg{subject: fmt.Sprintf("f%d", i)})
	}
	returned := make(chan struct{})
	go func() { full.put(testMsg{subject: "f3"}); close(returned) }()
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
	if left := full.take(nil); len(left) != 3 {
		t.Fatalf("after close the inbox holds %d messages, want the 3 queued before", len(left))
	}
}
