package api

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/slipstreamkv/slipstream/host/fold"
	"github.com/valyala/fasthttp"
)

// fastRead answers a plain key read, GET /v1/folds/{fold}/keys/{key}
// without a query, on the fast server, as get would: the value with its
// revision and position headers, or the error of a read that failed. Any
// other request, and a key read whose path net/http's ServeMux would not
// take as it is (a path to clean, which it redirects; an escaped fold
// name), it leaves alone and reports false.
func (a *api) fastRead(ctx *fasthttp.RequestCtx) bool {
	if !plainGet(&ctx.Request.Header) {
		return false
	}
	name, key, ok := keyReadPath(ctx.Request.Header.RequestURI())
	if !ok {
		return false
	}
	h := &ctx.Response.Header
	f, ok := a.folds[string(name)]
	if !ok {
		ctx.SetStatusCode(http.StatusNotFound)
		h.SetContentType("application/json")
		ctx.SetBody(jsonBody(Error{Error: noFold(string(name))}))
		return true
	}
	e, at, err := f.Lookup(ctx, key)
	if at.Generation > 0 {
		setFastPosition(h, at)
	}
	if err != nil {
		code, msg, passing := readFailure(err)
		if passing {
			h.Set("Retry-After", "1")
		}
		ctx.SetStatusCode(code)
		h.SetContentType("application/json")
		ctx.SetBody(jsonBody(Error{Error: msg}))
		return true
	}
	h.SetContentType("application/octet-stream")
	var num [20]byte
	h.SetBytesV(RevisionHeader, strconv.AppendUint(num[:0], e.Revision, 10))
	ctx.SetBody(e.Value)
	return true
}

func setFastPosition(h *fasthttp.ResponseHeader, at fold.Position) {
	var num [20]byte
	h.SetBytesV(GenerationHeader, strconv.AppendInt(num[:0], int64(at.Generation), 10))
	h.SetBytesV(CursorHeader, strconv.AppendUint(num[:0], at.Cursor, 10))
}

// plainGet reports whether a request is a GET that net/http reads as
// fasthttp did: HTTP/1.1, a Host, no body, no Expect. fasthttp's parser is
// more lenient than net/http's in corners (a version other than 1.1, a
// Transfer-Encoding it drops): those requests go to net/http.
func plainGet(h *fasthttp.RequestHeader) bool {
	// ContentLength is -2 without a Content-Length header, -1 when chunked.
	cl := h.ContentLength()
	return h.IsGet() && h.IsHTTP11() && len(h.Host()) > 0 && (cl == 0 || cl == -2) &&
		h.Peek("Expect") == nil && h.Peek("Transfer-Encoding") == nil
}

var (
	foldsPath = []byte("/v1/folds/")
	keysPath  = []byte("/keys/")
)

// keyReadPath splits the request URI of a plain key read into the fold's
// name and the key (unescaped). ok is false for any other URI: another
// path, a query (even an empty one), an escaped or dot fold name, an empty
// key, and a path that ServeMux would clean (an empty, "." or ".." segment
// in the key but for a trailing slash), which it answers with a redirect.
func keyReadPath(uri []byte) (name, key []byte, ok bool) {
	rest, ok := bytes.CutPrefix(uri, foldsPath)
	if !ok || !pathBytes(rest) {
		return nil, nil, false
	}
	slash := bytes.IndexByte(rest, '/')
	if slash <= 0 {
		return nil, nil, false
	}
	name, rest = rest[:slash], rest[slash:]
	if bytes.IndexByte(name, '%') >= 0 || string(name) == "." || string(name) == ".." {
		return nil, nil, false
	}
	key, ok = bytes.CutPrefix(rest, keysPath)
	if !ok || len(key) == 0 {
		return nil, nil, false
	}
	// ServeMux cleans the path as sent: an escaped slash separates nothing.
	if !cleanKey(key) {
		return nil, nil, false
	}
	if bytes.IndexByte(key, '%') >= 0 {
		s, err := url.PathUnescape(string(key))
		if err != nil {
			return nil, nil, false
		}
		key = []byte(s)
	}
	return name, key, true
}

// pathBytes reports whether p holds only the bytes of an RFC 3986 path
// (unreserved, sub-delims, ':', '@', '/' and '%'): no query or fragment,
// and nothing that net/url would escape again, which makes ServeMux see
// another path (an escaped slash then separates segments).
func pathBytes(p []byte) bool {
	for _, c := range p {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// cleanKey reports whether the path ending in key is one that ServeMux
// matches as it is: no empty, "." or ".." segment, but for an empty last
// one (a trailing slash, which its cleaning keeps).
func cleanKey(key []byte) bool {
	for len(key) > 0 {
		seg, rest, more := bytes.Cut(key, []byte{'/'})
		if len(seg) == 0 || string(seg) == "." || string(seg) == ".." {
			return false
		}
		if !more {
			break
		}
		key = rest
	}
	return true
}

// requireTokenFast puts a plain key read behind the token: a read without
// it is left to the HTTP half, which answers 401 (RequireToken).
func requireTokenFast(read func(*fasthttp.RequestCtx) bool, t tokenCheck) func(*fasthttp.RequestCtx) bool {
	return func(ctx *fasthttp.RequestCtx) bool {
		if t.check(string(ctx.Request.Header.Peek("Authorization"))) != tokenValid {
			return false
		}
		return read(ctx)
	}
}
