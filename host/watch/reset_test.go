package watch

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestTookAllSentAfterReset: after an ordered consumer's reset the new
// consumer may have sent nothing while its predecessor's messages still
// wait in the inbox; Check must not take that for caught up.
func TestTookAllSentAfterReset(t *testing.T) {
	info := func(name string, start, delivered uint64) *jetstream.ConsumerInfo {
		return &jetstream.ConsumerInfo{Name: name, Config: jetstream.ConsumerConfig{OptStartSeq: start},
			Delivered: jetstream.SequenceInfo{Consumer: delivered}}
	}
	for _, c := range []struct {
		what    string
		handled uint64 // stream sequence of the last message Next handled
		last    string // its consumer
		lastSeq uint64 // its consumer sequence
		ci      *jetstream.ConsumerInfo
		want    bool
	}{
		{"a re-list's consumer that sent nothing", 0, "", 0, info("c_1", 0, 0), true},
		{"a resume's consumer that sent nothing", 41, "", 0, info("c_1", 42, 0), true},
		{"a reset's consumer, its predecessor's messages all taken", 49, "c_1", 9, info("c_2", 50, 0), true},
		{"a reset's consumer, its predecessor's messages still queued", 10, "c_1", 3, info("c_2", 50, 0), false},
		{"the consumer's last message taken", 60, "c_2", 11, info("c_2", 50, 11), true},
		{"the consumer's last message not yet taken", 59, "c_2", 10, info("c_2", 50, 11), false},
		{"a consumer the reader has not heard from", 49, "c_1", 9, info("c_2", 50, 1), false},
	} {
		w := &Watch{handled: c.handled, lastConsumer: c.last, lastConsumerSeq: c.lastSeq}
		if got := w.tookAllSent(c.ci); got != c.want {
			t.Errorf("%s: tookAllSent = %v, want %v", c.what, got, c.want)
		}
	}
}
