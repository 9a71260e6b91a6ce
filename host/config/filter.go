package config

import (
	"fmt"
	"strings"
	"unicode"
)

// filterProblem returns why s is not a valid key filter, or "" if it is one. A
// filter is a KV key in NATS subject syntax: tokens separated by '.', none
// empty; '*' matches one token and '>' the rest, each only as a whole token
// and '>' only last; other characters are those nats.go allows in KV keys.
func filterProblem(s string) string {
	if s == "" {
		return "empty filter"
	}
	if strings.ContainsFunc(s, unicode.IsSpace) {
		return "contains whitespace"
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return "empty token"
		case t == ">":
			if i != len(tokens)-1 {
				return "'>' must be the last token"
			}
		case t == "*":
		case strings.ContainsAny(t, "*>"):
			return fmt.Sprintf("wildcard in token %q: '*' and '>' must be whole tokens", t)
		default:
			for _, r := range t {
				if !isKeyRune(r) {
					return fmt.Sprintf("character %q is not allowed in a KV key", r)
				}
			}
		}
	}
	return ""
}

// isKeyRune reports whether r may appear in a KV key token (nats.go's
// [-/_=.a-zA-Z0-9], less the '.' that separates tokens).
func isKeyRune(r rune) bool {
	return r < 0x80 && (isBareKeyByte(byte(r)) || r == '/' || r == '=')
}

// filtersOverlap reports whether some key matches both valid filters; NATS
// refuses overlapping filters on one consumer.
func filtersOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		if i == len(at) || i == len(bt) {
			return len(at) == len(bt)
		}
		if at[i] == ">" || bt[i] == ">" {
			return true
		}
		if at[i] != "*" && bt[i] != "*" && at[i] != bt[i] {
			return false
		}
	}
}
