package config

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// locator maps key paths to the lines that define them. BurntSushi/toml keeps
// key positions private (and without array indexes), so the locator scans the
// document itself. It is tolerant rather than strict: it only runs on text the
// TOML parser has already accepted, or, for a syntax error, on the valid text
// before the error; on anything it does not understand it skips to the next line.
type locator struct {
	lines   map[string]int // path → line of its first definition
	headers []header       // table headers in document order
}

type header struct {
	line int
	path path
}

// maxNesting bounds the locator's recursion into nested arrays and inline tables.
const maxNesting = 256

func newLocator(src []byte) *locator {
	l := &locator{lines: make(map[string]int)}
	s := &scanner{src: src, line: 1, loc: l, arrays: make(map[string]int)}
	if strings.HasPrefix(string(src[:min(len(src), 3)]), "\ufeff") {
		s.pos = 3
	}
	s.document()
	return l
}

// line returns the line that defines p. A key that is absent resolves to its
// nearest enclosing key that is present (for a missing required key, the
// header of its table); a key absent at the top level resolves to line 1.
func (l *locator) line(p path) int {
	for n := len(p); n > 0; n-- {
		if ln, ok := l.lines[p[:n].String()]; ok {
			return ln
		}
	}
	return 1
}

// tableAt returns the table that is open at the start of line ln: the path of
// the last header above it, or nil for the top level.
func (l *locator) tableAt(ln int) path {
	var p path
	for _, h := range l.headers {
		if h.line >= ln {
			break
		}
		p = h.path
	}
	return p
}

type scanner struct {
	src    []byte
	pos    int
	line   int
	loc    *locator
	arrays map[string]int // array-of-tables path (parents indexed) → elements so far
	table  path
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) advance() {
	if s.eof() {
		return
	}
	if s.src[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

func (s *scanner) hasPrefix(p string) bool {
	return strings.HasPrefix(string(s.src[s.pos:min(len(s.src), s.pos+len(p))]), p)
}

// skipBlank skips spaces, tabs and comments, and newlines too if newlines is set.
func (s *scanner) skipBlank(newlines bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t':
			s.advance()
		case c == '#':
			for !s.eof() && s.peek() != '\n' {
				s.advance()
			}
		case newlines && (c == '\n' || c == '\r'):
			s.advance()
		default:
			return
		}
	}
}

func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.advance()
	}
	s.advance()
}

func (s *scanner) define(p path, line int) {
	for n := 1; n <= len(p); n++ {
		k := p[:n].String()
		if _, ok := s.loc.lines[k]; !ok {
			s.loc.lines[k] = line
		}
	}
}

func (s *scanner) document() {
	for {
		s.skipBlank(true)
		if s.eof() {
			return
		}
		start := s.pos
		if s.peek() == '[' {
			s.header()
		} else {
			s.keyval(s.table, 0)
		}
		s.skipBlank(false)
		if !s.eof() && s.peek() != '\n' && s.peek() != '\r' || s.pos == start {
			s.skipLine()
		}
	}
}

// header scans [table] or [[array.of.tables]] and makes it the current table.
func (s *scanner) header() {
	line := s.line
	s.advance()
	array := s.peek() == '['
	if array {
		s.advance()
	}
	s.skipBlank(false)
	keys, ok := s.key()
	if !ok || s.peek() != ']' {
		return
	}
	s.advance()
	if array {
		if s.peek() != ']' {
			return
		}
		s.advance()
	}
	p := s.resolve(keys[:len(keys)-1]).key(keys[len(keys)-1])
	if array {
		k := p.String()
		n := s.arrays[k]
		s.arrays[k] = n + 1
		s.define(p, line)
		p = p.index(n)
	}
	s.define(p, line)
	// An explicit header defines its table even if a deeper header mentioned it first.
	s.loc.lines[p.String()] = line
	s.table = p
	s.loc.headers = append(s.loc.headers, header{line: line, path: p})
}

// resolve turns header keys into a path: a key naming an array of tables
// means its last element, as in TOML.
func (s *scanner) resolve(keys []string) path {
	var p path
	for _, k := range keys {
		p = p.key(k)
		if n := s.arrays[p.String()]; n > 0 {
			p = p.index(n - 1)
		}
	}
	return p
}

// keyval scans key = value relative to base.
func (s *scanner) keyval(base path, depth int) bool {
	line := s.line
	keys, ok := s.key()
	if !ok || s.peek() != '=' {
		return false
	}
	s.advance()
	s.skipBlank(false)
	p := base
	for _, k := range keys {
		p = p.key(k)
	}
	s.define(p, line)
	return s.value(p, depth)
}

// key scans a possibly dotted key of bare, "basic" and 'literal' parts, and the
// blanks after it.
func (s *scanner) key() ([]string, bool) {
	var keys []string
	for {
		s.skipBlank(false)
		var k string
		switch c := s.peek(); {
		case c == '"':
			s.advance()
			k = s.basicString()
		case c == '\'':
			s.advance()
			k = s.literalString()
		case isBareKeyByte(c):
			start := s.pos
			for !s.eof() && isBareKeyByte(s.peek()) {
				s.advance()
			}
			k = string(s.src[start:s.pos])
		default:
			return nil, false
		}
		keys = append(keys, k)
		s.skipBlank(false)
		if s.peek() != '.' {
			return keys, true
		}
		s.advance()
	}
}

func (s *scanner) value(p path, depth int) bool {
	if depth > maxNesting {
		return false
	}
	switch {
	case s.hasPrefix(`"""`):
		s.multiline('"')
	case s.hasPrefix(`'''`):
		s.multiline('\'')
	case s.peek() == '"':
		s.advance()
		s.basicString()
	case s.peek() == '\'':
		s.advance()
		s.literalString()
	case s.peek() == '{':
		s.advance()
		for {
			s.skipBlank(true)
			if s.peek() == '}' {
				s.advance()
				return true
			}
			if !s.keyval(p, depth+1) {
				return false
			}
			s.skipBlank(true)
			if s.peek() == ',' {
				s.advance()
			}
		}
	case s.peek() == '[':
		s.advance()
		for i := 0; ; i++ {
			s.skipBlank(true)
			if s.peek() == ']' {
				s.advance()
				return true
			}
			if s.eof() {
				return false
			}
			s.define(p.index(i), s.line)
			if !s.value(p.index(i), depth+1) {
				return false
			}
			s.skipBlank(true)
			if s.peek() == ',' {
				s.advance()
			}
		}
	default:
		start := s.pos
		for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.peek())) {
			s.advance()
		}
		return s.pos > start
	}
	return true
}

// basicString scans the rest of a "string" whose opening quote was consumed
// and returns its decoded content.
func (s *scanner) basicString() string {
	var b strings.Builder
	for !s.eof() {
		c := s.peek()
		switch c {
		case '"':
			s.advance()
			return b.String()
		case '\n':
			return b.String()
		case '\\':
			s.advance()
			s.escape(&b)
		default:
			b.WriteByte(c)
			s.advance()
		}
	}
	return b.String()
}

var simpleEscapes = map[byte]byte{
	'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r', 'e': 0x1b, '"': '"', '\\': '\\',
}

// escape decodes the escape sequence after a backslash.
func (s *scanner) escape(b *strings.Builder) {
	c := s.peek()
	if r, ok := simpleEscapes[c]; ok {
		s.advance()
		b.WriteByte(r)
		return
	}
	digits := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
	if digits == 0 || s.pos+1+digits > len(s.src) {
		return
	}
	r, err := strconv.ParseUint(string(s.src[s.pos+1:s.pos+1+digits]), 16, 32)
	if err != nil || !utf8.ValidRune(rune(r)) {
		return
	}
	for range digits + 1 {
		s.advance()
	}
	b.WriteRune(rune(r))
}

func (s *scanner) literalString() string {
	start := s.pos
	for !s.eof() && s.peek() != '\'' && s.peek() != '\n' {
		s.advance()
	}
	k := string(s.src[start:s.pos])
	if s.peek() == '\'' {
		s.advance()
	}
	return k
}

// multiline skips a multi-line string delimited by three q quotes, including up
// to two quotes that end its content right before the closing delimiter.
func (s *scanner) multiline(q byte) {
	delim := strings.Repeat(string(q), 3)
	for range 3 {
		s.advance()
	}
	for !s.eof() {
		if q == '"' && s.peek() == '\\' {
			s.advance()
			s.advance()
			continue
		}
		if s.hasPrefix(delim) {
			for range 3 {
				s.advance()
			}
			for i := 0; i < 2 && s.peek() == q; i++ {
				s.advance()
			}
			return
		}
		s.advance()
	}
}
