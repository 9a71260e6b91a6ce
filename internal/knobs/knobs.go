// Package knobs carries the switches that turn one of the host's defences
// off, for the tests that prove the defence matters (the fold's test hooks
// set them). They travel in a context, under a key only this module can
// name, so that no exported API offers them and nothing outside the module
// can set them. Production code never does.
package knobs

import "context"

// Watch turns off defences of package host/watch.
type Watch struct {
	// NoExpiryChecks skips the first-sequence checks of watch.Start.
	NoExpiryChecks bool
	// NoBookmarks makes Watch.Check ignore the consumer's examined
	// position.
	NoBookmarks bool
}

type watchKey struct{}

// WithWatch returns ctx carrying k; a zero k returns ctx itself.
func WithWatch(ctx context.Context, k Watch) context.Context {
	if k == (Watch{}) {
		return ctx
	}
	return context.WithValue(ctx, watchKey{}, k)
}

// WatchFrom returns the Watch knobs ctx carries, or none.
func WatchFrom(ctx context.Context) Watch {
	k, _ := ctx.Value(watchKey{}).(Watch)
	return k
}
