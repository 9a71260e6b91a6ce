package config

import (
	"strconv"
	"strings"
)

// A path names one value of the document: table keys and array indexes, printed
// as fold[1].batch.window. The decoder, the validator and the locator all build
// paths the same way, so a path printed in an error is a path the locator knows.
type path []elem

type elem struct {
	key     string
	index   int
	isIndex bool
}

// key returns p extended by a table key; it never aliases p's backing array.
func (p path) key(k string) path {
	return append(p[:len(p):len(p)], elem{key: k})
}

// index returns p extended by an array index.
func (p path) index(i int) path {
	return append(p[:len(p):len(p)], elem{index: i, isIndex: true})
}

func (p path) String() string {
	var b strings.Builder
	for i, e := range p {
		if e.isIndex {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.index))
			b.WriteByte(']')
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		if isBareKey(e.key) {
			b.WriteString(e.key)
		} else {
			b.WriteString(strconv.Quote(e.key))
		}
	}
	return b.String()
}

// names returns the keys of p without its indexes: the form BurntSushi/toml
// uses in ParseError.LastKey.
func (p path) names() []string {
	var out []string
	for _, e := range p {
		if !e.isIndex {
			out = append(out, e.key)
		}
	}
	return out
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBareKeyByte(s[i]) {
			return false
		}
	}
	return true
}

func isBareKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
