//go:build wasip1

package guest

import "unsafe"

//lint:file-ignore U1000 the host calls these through go:wasmexport, which staticcheck does not follow

// The exports of ABI v1. They only translate between guest addresses and
// the module's buffers; the logic is in abi.go.

//go:wasmexport slipstream_abi_v1
func abiV1() {}

//go:wasmexport slipstream_alloc
func slipstreamAlloc(size uint32) uint32 {
	mod.inBase = address(mod.alloc(size))
	return mod.inBase
}

//go:wasmexport slipstream_output
func slipstreamOutput() uint64 {
	return uint64(address(mod.out))<<32 | uint64(len(mod.out))
}

//go:wasmexport slipstream_init
func slipstreamInit(ptr, n uint32) int32 {
	return mod.init(ptr, n)
}

//go:wasmexport slipstream_record
func slipstreamRecord(op, keyPtr, keyLen, valPtr, valLen uint32, revision uint64) int32 {
	return mod.record(op, keyPtr, keyLen, valPtr, valLen, revision)
}

//go:wasmexport slipstream_batch
func slipstreamBatch(ptr, n uint32) int32 {
	return mod.batch(ptr, n)
}

// address is the guest address of b's backing array. Go's collector does
// not move objects, so the address stays valid while mod holds b.
func address(b []byte) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
