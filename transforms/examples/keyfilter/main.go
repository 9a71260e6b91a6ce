//go:build wasip1

// Command keyfilter is a slipstream transform that keeps the records whose
// key matches an allow pattern and no deny pattern. It decides on the key
// alone, so deletes and purges are filtered exactly like puts.
//
// Configuration:
//
//	allow = ["route.*", "cfg.>"]  # keep keys matching any; absent or empty keeps all
//	deny  = ["*.secret"]          # drop keys matching any, even if allowed
//
// Patterns are matched token by token, tokens being separated by ".":
//
//   - a "*" inside a token matches any run of characters other than "."
//     ("route.*" matches "route.a" but not "route.a.b"; "user-*.name"
//     matches "user-42.name");
//   - a final token ">" matches one or more tokens ("cfg.>" matches
//     "cfg.a" and "cfg.a.b", not "cfg");
//   - every other character matches itself.
package main

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/slipstreamkv/slipstream/sdk/guest"
)

// pattern is a compiled key pattern.
type pattern struct {
	tokens []string // the tokens before any final ">"
	tail   bool     // the pattern ends with ">"
}

func compile(p string) (pattern, error) {
	tokens := strings.Split(p, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return pattern{}, errors.New("pattern " + strconv.Quote(p) + " has an empty token")
		case t == ">" && i == len(tokens)-1:
			return pattern{tokens: tokens[:i], tail: true}, nil
		case strings.Contains(t, ">"):
			return pattern{}, errors.New("pattern " + strconv.Quote(p) + `: ">" must be the whole last token`)
		}
	}
	return pattern{tokens: tokens}, nil
}

func (p pattern) match(key []byte) bool {
	for i, t := range p.tokens {
		tok, rest, more := bytes.Cut(key, []byte("."))
		if !matchToken(t, tok) {
			return false
		}
		if !more {
			return i == len(p.tokens)-1 && !p.tail
		}
		key = rest
	}
	return p.tail && len(key) > 0
}

// matchToken matches one token against a pattern token in which "*"
// matches any run of characters.
func matchToken(p string, s []byte) bool {
	pi, si := 0, 0
	star, resume := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, resume = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			resume++
			pi, si = star+1, resume
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func compileAll(ps []string) ([]pattern, error) {
	out := make([]pattern, 0, len(ps))
	for _, p := range ps {
		c, err := compile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func matchAny(ps []pattern, key []byte) bool {
	for _, p := range ps {
		if p.match(key) {
			return true
		}
	}
	return false
}

var allow, deny []pattern

func init() {
	guest.Register(guest.Transform{
		Init: func(config []byte) error {
			var cfg struct {
				Allow []string `json:"allow"`
				Deny  []string `json:"deny"`
			}
			err := guest.DecodeConfig(config, &cfg)
			if err == nil {
				allow, err = compileAll(cfg.Allow)
			}
			if err == nil {
				deny, err = compileAll(cfg.Deny)
			}
			return err
		},
		Record: func(r guest.Record) guest.Result {
			if (len(allow) > 0 && !matchAny(allow, r.Key)) || matchAny(deny, r.Key) {
				return guest.Result{Drop: true}
			}
			return guest.Result{}
		},
	})
}

func main() {}
