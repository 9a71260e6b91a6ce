package config

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a string such as "10ms",
// "30m" or "1h30m" (time.ParseDuration syntax). The integer 0 is accepted too.
type Duration time.Duration

// UnmarshalText parses a time.ParseDuration string.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf(`invalid duration %q: want a number and a unit, such as "10ms", "30s" or "1h30m"`, text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration so that UnmarshalText reads it back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String returns the duration as time.Duration formats it.
func (d Duration) String() string { return time.Duration(d).String() }

// ByteSize is a number of bytes, written in TOML as an integer or as a string
// with a unit: "512KiB", "4MiB", "1GB", "64 MB". Units: B; KB, MB, GB, TB
// (powers of 1000); KiB, MiB, GiB, TiB (powers of 1024); case is ignored. A
// fraction is allowed when the result is a whole number of bytes ("1.5KiB").
type ByteSize int64

var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// UnmarshalText parses a byte count with an optional unit.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
	unit, ok := byteUnits[strings.ToLower(s[len(num):])]
	num = strings.TrimSpace(num)
	if !ok || !isDecimal(num) {
		return fmt.Errorf(`invalid byte size %q: want bytes as an integer, or a number and a unit such as "512KiB", "4MiB" or "1GB"`, text)
	}
	v, _ := new(big.Rat).SetString(num)
	v.Mul(v, new(big.Rat).SetInt64(unit))
	if !v.IsInt() {
		return fmt.Errorf("invalid byte size %q: not a whole number of bytes", text)
	}
	if !v.Num().IsInt64() {
		return fmt.Errorf("invalid byte size %q: too large", text)
	}
	*b = ByteSize(v.Num().Int64())
	return nil
}

// isDecimal reports whether s is an optionally negative decimal number such as
// 12 or -1 or 1.5, with no exponent.
func isDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	whole, frac, dot := strings.Cut(s, ".")
	digits := func(t string) bool {
		return t != "" && strings.Trim(t, "0123456789") == ""
	}
	return digits(whole) && (!dot || digits(frac))
}

// MarshalText writes the size so that UnmarshalText reads it back.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// String returns the size in the largest unit that divides it exactly, such as
// "4MiB" or "1GB", or as a plain integer of bytes.
func (b ByteSize) String() string {
	if b > 0 {
		for _, u := range []struct {
			name string
			size int64
		}{{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3}} {
			if int64(b)%u.size == 0 {
				return strconv.FormatInt(int64(b)/u.size, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// unlimited is how a bucket limit says "no limit" after loading.
const unlimited = ByteSize(-1)
