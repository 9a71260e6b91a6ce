// Package transforms runs slipstream's WASM transforms: chains of sandboxed
// WebAssembly modules that filter, rename and reshape KV records before a
// fold stores them. Modules speak ABI v1, specified in ABI.md beside this
// file; sdk/guest implements it for Go guests.
//
// The package owns compiling modules (once per runtime, with an optional
// on-disk cache), instantiating them with deterministic WASI stubs, capping
// their memory, bounding every call by a deadline, replacing instances that
// fail, and the chain digest a fold records. It must never give a guest the
// host's filesystem, network, clock or randomness, and never let a guest
// failure pass for an answer.
package transforms
