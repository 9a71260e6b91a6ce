package config

import (
	"testing"
	"time"
)

func TestByteSizeUnmarshalText(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "4096", want: 4096},
		{in: "-1", want: -1},
		{in: "512KiB", want: 512 << 10},
		{in: "4MiB", want: 4 << 20},
		{in: "4mib", want: 4 << 20},
		{in: "1GB", want: 1_000_000_000},
		{in: "64 MB", want: 64_000_000},
		{in: " 2 TiB ", want: 2 << 40},
		{in: "1.5KiB", want: 1536},
		{in: "1.1MB", want: 1_100_000},
		{in: "10B", want: 10},
		{in: "8191PiB", wantErr: true},
		{in: "8EiB", wantErr: true},
		{in: "9223372036854775807", want: 9223372036854775807},
		{in: "9223372036854775808", wantErr: true},
		{in: "10000000TiB", wantErr: true},
		{in: "1.5", wantErr: true},
		{in: "0.1KB", want: 100},
		{in: "0.0001KB", wantErr: true},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "4 MeB", wantErr: true},
		{in: "1e3", wantErr: true},
		{in: "0x10", wantErr: true},
		{in: "+5", wantErr: true},
		{in: "1.KiB", wantErr: true},
		{in: ".5KiB", wantErr: true},
		{in: "1/2KiB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got ByteSize
			err := got.UnmarshalText([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("UnmarshalText(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("UnmarshalText(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	for in, want := range map[ByteSize]string{
		-1: "-1", 0: "0", 1000: "1KB", 1024: "1KiB", 1536: "1536", 1500: "1500", 4 << 20: "4MiB",
		1e9: "1GB", 3 << 40: "3TiB", 1 << 62: "4194304TiB",
	} {
		text, err := in.MarshalText()
		if err != nil || string(text) != want {
			t.Errorf("MarshalText(%d) = %q, %v; want %q", int64(in), text, err, want)
		}
		var back ByteSize
		if err := back.UnmarshalText(text); err != nil || back != in {
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d", text, back, err, int64(in))
		}
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "10ms", want: 10 * time.Millisecond},
		{in: "30m", want: 30 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "0", want: 0},
		{in: "-1s", want: -time.Second},
		{in: "10", wantErr: true},
		{in: "1d", wantErr: true},
		{in: "", wantErr: true},
		{in: "1 s", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got Duration
			err := got.UnmarshalText([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("UnmarshalText(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || time.Duration(got) != tt.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			text, _ := got.MarshalText()
			var back Duration
			if err := back.UnmarshalText(text); err != nil || back != got {
				t.Fatalf("round trip of %v through %q gave %v, %v", got, text, back, err)
			}
		})
	}
}
