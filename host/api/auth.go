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
	if token == "" {
		panic("api: RequireToken with an empty token")
	}
	// Comparing digests keeps the comparison's time independent of the
	// sent token's length as well as of its content.
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/livez" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			h.ServeHTTP(w, r)
			return
		}
		sent, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="slipstream"`)
			fail(w, http.StatusUnauthorized, "missing bearer token: send the header Authorization: Bearer TOKEN")
			return
		}
		got := sha256.Sum256([]byte(sent))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="slipstream", error="invalid_token"`)
			fail(w, http.StatusUnauthorized, "invalid bearer token")
			return
		}
		h.ServeHTTP(w, r)
	})
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
