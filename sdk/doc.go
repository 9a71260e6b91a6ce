// Package sdk is what a slipstream store plugin is written with: the Store
// contract, its types, its optional interfaces, and Serve.
//
// A store backend implements [Store], a small interface over raw bytes, and
// hands it to [Serve] from its main function:
//
//	func main() { sdk.Serve(mystore.New()) }
//
// The binary is then a go-plugin gRPC server that the host starts, one
// process per open generation of a fold. A store may also implement
// [Loader] (a faster fill of an empty fold), [Compacter], [Snapshotter] (a
// consistent read view that Apply does not wait for), [Describer] and
// [LoggerSetter]: implementing the interface is what declares the
// capability, and the host calls an optional method only on a store that
// has it.
//
// What a backend must guarantee, in one paragraph: [Store.Apply] commits all
// of a batch's mutations together with its cursor and metadata atomically;
// [Store.Open] reports the cursor and metadata of the last committed batch;
// reads ([Store.Get], [Store.Scan], [Store.Stats]) may run concurrently with
// one Apply and see either all of a batch or none of it. Serve serializes
// Apply calls and rejects every call before Open and after Close, so a
// backend does not need to. While a fold catches up the host sends batches
// without waiting for each to commit; Serve still calls Apply one batch at a
// time, in the order sent, and stops at the first that fails, so a backend
// sees no difference. The conformance suite (package conformance, and
// `slipstream conformance --plugin PATH`) proves a backend against this contract;
// sdk/example is a complete store to start from.
//
// Guest-side helpers for WASM transform authors live in sdk/guest.
package sdk
