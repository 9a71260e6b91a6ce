package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// RequireToken returns h behind a bearer token: every request but GET (or
// HEAD) /livez must carry the header "Authorization: Bearer TOKEN", or it
// is answered 401 with a WWW-Authenticate: Bearer challenge and an Error
// body, and h never sees it. The comparison takes the same time whatever
// the token sent; no answer repeats what was sent. token must not be
// empty.
func RequireToken(h http.Handler, token string) http.Handler {
	return requireToken(h, newTokenCheck(token))
}

// WithToken puts both halves of the API behind token, as RequireToken
// does: a plain key read without it is left to the HTTP half, which
// answers 401.
func (r Routes) WithToken(token string) Routes {
	t := newTokenCheck(token)
	return Routes{HTTP: requireToken(r.HTTP, t), Read: requireTokenFast(r.Read, t)}
}

func requireToken(h http.Handler, t tokenCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/livez" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			h.ServeHTTP(w, r)
			return
		}
		switch t.check(r.Header.Get("Authorization")) {
		case tokenMissing:
			w.Header().Set("WWW-Authenticate", `Bearer realm="slipstream"`)
			fail(w, http.StatusUnauthorized, "missing bearer token: send the header Authorization: Bearer TOKEN")
		case tokenInvalid:
			w.Header().Set("WWW-Authenticate", `Bearer realm="slipstream", error="invalid_token"`)
			fail(w, http.StatusUnauthorized, "invalid bearer token")
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// tokenCheck holds the digest of the token that requests must carry.
// Comparing digests keeps the comparison's time independent of the sent
// token's length as well as of its content.
type tokenCheck struct{ want [sha256.Size]byte }

func newTokenCheck(token string) tokenCheck {
	if token == "" {
		panic("api: RequireToken with an empty token")
	}
	return tokenCheck{want: sha256.Sum256([]byte(token))}
}

// The outcomes of tokenCheck.check.
const (
	tokenValid = iota
	tokenMissing
	tokenInvalid
)

// check judges an Authorization header.
func (t tokenCheck) check(header string) int {
	sent, ok := bearer(header)
	if !ok {
		return tokenMissing
	}
	got := sha256.Sum256([]byte(sent))
	if subtle.ConstantTimeCompare(got[:], t.want[:]) != 1 {
		return tokenInvalid
	}
	return tokenValid
}

// bearer returns the credentials of an Authorization header of the Bearer
// scheme (whose name is case-insensitive, RFC 9110 section 11.1).
func bearer(header string) (string, bool) {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}
