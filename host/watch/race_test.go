//go:build race

package watch

// raceDetector: the tests run under the race detector, which slows the
// reader too much for some interleavings to come up in seconds.
const raceDetector = true
