package objstore

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	created0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	created1 = created0.Add(time.Hour) // the stream, recreated
)

func ptr(cursor uint64, hash string, created time.Time) Pointer {
	return Pointer{Object: objectName("s", digestOf(hash, cursor)), ContentHash: hash, Cursor: cursor,
		Bucket: "b", Stream: "KV_b", StreamCreated: created}
}

func digestOf(hash string, cursor uint64) string {
	return strings.Repeat("0", digestLen-len(hash)-2) + hash + string(rune('a'+cursor%6)) + "f"
}

func TestDecidePointer(t *testing.T) {
	cur := ptr(10, "aa", created0)
	foreign := ptr(20, "aa", created0)
	foreign.Stream = "KV_other"
	otherBucket := ptr(20, "aa", created0)
	otherBucket.Bucket = "other"
	for _, c := range []struct {
		name string
		cur  *Pointer
		next Pointer
		move bool
		err  error  // wrapped by the error; nil: none
		msg  string // a part of the error message
	}{
		{name: "first", cur: nil, next: ptr(0, "aa", created0), move: true},
		{name: "forward", cur: &cur, next: ptr(11, "bb", created0), move: true},
		{name: "forward same content", cur: &cur, next: ptr(11, "aa", created0), move: true},
		{name: "same", cur: &cur, next: ptr(10, "aa", created0), move: false},
		{name: "same cursor other content", cur: &cur, next: ptr(10, "bb", created0), err: ErrSuperseded,
			msg: "cursor 10 with content aa, this export is cursor 10 with other content bb"},
		{name: "behind", cur: &cur, next: ptr(9, "aa", created0), err: ErrSuperseded,
			msg: "the pointer names cursor 10, this export is cursor 9"},
		{name: "far behind", cur: &cur, next: ptr(0, "cc", created0), err: ErrSuperseded},
		{name: "recreated stream", cur: &cur, next: ptr(2, "cc", created1), move: true},
		{name: "older stream", cur: ptrRef(ptr(2, "cc", created1)), next: ptr(50, "aa", created0), err: ErrSuperseded,
			msg: "older stream"},
		{name: "foreign stream", cur: &cur, next: foreign, err: ErrForeign},
		{name: "foreign bucket", cur: &cur, next: otherBucket, err: ErrForeign},
	} {
		t.Run(c.name, func(t *testing.T) {
			move, err := decidePointer(c.cur, c.next)
			if move != c.move {
				t.Errorf("move = %v, want %v", move, c.move)
			}
			if c.err == nil {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want one wrapping %v", err, c.err)
			}
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not contain %q", err, c.msg)
			}
			var se *SupersededError
			if errors.Is(c.err, ErrSuperseded) && (!errors.As(err, &se) || se.Current.Cursor != c.cur.Cursor || se.Attempted.Cursor != c.next.Cursor) {
				t.Errorf("error %#v does not carry both pointers", err)
			}
		})
	}
}

func ptrRef(p Pointer) *Pointer { return &p }

func TestIsPayload(t *testing.T) {
	d := strings.Repeat("0123456789abcdef", 4)
	for _, c := range []struct {
		object string
		want   bool
	}{
		{"s/" + d + ".slipsnap", true},
		{"s/" + strings.ToUpper(d) + ".slipsnap", false},
		{"s/" + d[1:] + ".slipsnap", false},
		{"s/" + d + "0.slipsnap", false},
		{"s/" + d, false},
		{"s/x/" + d + ".slipsnap", false}, // another series "s/x" cannot exist, but never prune it
		{"s.x/" + d + ".slipsnap", false}, // series "s.x"
		{"t/" + d + ".slipsnap", false},
		{"s/notes.txt", false},
	} {
		if got := isPayload("s", c.object); got != c.want {
			t.Errorf("isPayload(s, %q) = %v, want %v", c.object, got, c.want)
		}
	}
}

func TestDecodePointer(t *testing.T) {
	good := ptr(7, "aa", created0)
	b, err := encodePointer(good)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePointer("s", b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Object != good.Object || got.Cursor != 7 || !got.StreamCreated.Equal(created0) {
		t.Fatalf("decoded %+v, want %+v", got, good)
	}
	for name, raw := range map[string]string{
		"not json":        "{",
		"foreign object":  strings.Replace(string(b), `"s/`, `"t/`, 1),
		"no content hash": strings.Replace(string(b), `"content_hash":"aa"`, `"content_hash":""`, 1),
		"bad previous":    strings.Replace(string(b), `"object":`, `"previous":"s/x","object":`, 1),
	} {
		if _, err := decodePointer("s", []byte(raw)); !errors.Is(err, ErrBadPointer) {
			t.Errorf("%s: decodePointer(%s) = %v, want ErrBadPointer", name, raw, err)
		}
	}
}

func TestRemovableAndWindow(t *testing.T) {
	cur := ptr(10, "aa", created0)
	cur.Previous = objectName("s", strings.Repeat("e", digestLen))
	other := objectName("s", strings.Repeat("d", digestLen))
	if !removable(nil, other) || !removable(&cur, other) || removable(&cur, cur.Object) || removable(&cur, cur.Previous) {
		t.Error("removable keeps something other than what the pointer names")
	}
	if !withinWindow(time.Second, 2*time.Second) || withinWindow(2*time.Second, 2*time.Second) {
		t.Error("withinWindow is not elapsed < window")
	}
}

func TestObjectDigest(t *testing.T) {
	// The Object Store's form of the SHA-256 of "abc".
	o := objectName("s", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	if got, want := objectDigest(o), "SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="; got != want {
		t.Errorf("objectDigest = %q, want %q", got, want)
	}
}
