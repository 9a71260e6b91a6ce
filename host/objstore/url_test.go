package objstore

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Location
		err  string // a part of the error; "" when it parses
	}{
		{in: "nats-object://snaps/orders", want: Location{"snaps", "orders"}},
		{in: "nats-object://my_bucket-1/orders.eu-west_2", want: Location{"my_bucket-1", "orders.eu-west_2"}},
		{in: "NATS-OBJECT://snaps/orders", want: Location{"snaps", "orders"}},
		{in: "snaps/orders", err: "not a URL"},
		{in: "http://snaps/orders", err: `scheme "http"`},
		{in: "nats-object://snaps", err: "no series name"},
		{in: "nats-object://snaps/", err: "no series name"},
		{in: "nats-object:///orders", err: "no bucket name"},
		{in: "nats-object://sn.aps/orders", err: `'.' is not allowed`},
		{in: "nats-object://user@snaps/orders", err: "user or port"},
		{in: "nats-object://snaps:4222/orders", err: "user or port"},
		{in: "nats-object://snaps/orders?x=1", err: "query or fragment"},
		{in: "nats-object://snaps/orders#x", err: "query or fragment"},
		{in: "nats-object://snaps/a/b", err: "has a '/'"},
		{in: "nats-object://snaps/.orders", err: "dots only between"},
		{in: "nats-object://snaps/orders.", err: "dots only between"},
		{in: "nats-object://snaps/a..b", err: "dots only between"},
		{in: "nats-object://snaps/or*ders", err: `'*' is not allowed`},
		{in: "nats-object://snaps/or ders", err: `' ' is not allowed`},
		{in: "nats-object://snaps/" + strings.Repeat("n", maxNameLen+1), err: "at most 128"},
		{in: "nats-object://" + strings.Repeat("b", maxBucketLen+1) + "/n", err: "at most 200"},
	} {
		got, err := ParseURL(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("ParseURL(%q): %v", c.in, err)
		case c.err == "" && got != c.want:
			t.Errorf("ParseURL(%q) = %+v, want %+v", c.in, got, c.want)
		case c.err != "" && err == nil:
			t.Errorf("ParseURL(%q) = %+v, want an error containing %q", c.in, got, c.err)
		case c.err != "" && !strings.Contains(err.Error(), c.err):
			t.Errorf("ParseURL(%q): %v, want an error containing %q", c.in, err, c.err)
		}
	}
}

func TestLocationStringRoundTrips(t *testing.T) {
	l := Location{Bucket: "snaps", Name: "orders.eu"}
	got, err := ParseURL(l.String())
	if err != nil || got != l {
		t.Fatalf("ParseURL(%q) = %+v, %v; want %+v", l.String(), got, err, l)
	}
}
