// Package sdk is the contract between the slipstream host and its store
// plugins, and the helpers third parties use to write one.
//
// A store backend implements [Store], a small interface over raw bytes, and
// hands it to [Serve] from its main function:
//
//	func main() { sdk.Serve(mystore.New()) }
//
// The binary is then a go-plugin gRPC server. The host starts it with
// [Launch] and talks to it through the returned [*Plugin], which implements
// [Store] too, so the host and the conformance suite are written against one
// interface whether the backend is in-process or behind a process boundary.
//
// What a backend must guarantee, in one paragraph: [Store.Apply] commits all
// of a batch's mutations together with its cursor and metadata atomically;
// [Store.Open] reports the cursor and metadata of the last committed batch;
// reads ([Store.Get], [Store.Scan], [Store.Stats]) may run concurrently with
// one Apply and see either all of a batch or none of it. The serving side of
// this package serializes Apply calls and rejects every call after Close, so a
// backend does not need to. While a fold catches up, the host sends batches
// on an apply pipe ([Plugin.Pipe]) without waiting for each; the serving side
// still calls Apply one batch at a time, in the order sent, and stops at the
// first that fails, so a backend sees no difference. The conformance suite (package conformance)
// proves a backend against this contract.
//
// Guest-side helpers for WASM transform authors live in sdk/guest.
package sdk
