;; Test guest: imports a WASI function that does not exist.
(module
  (import "wasi_snapshot_preview1" "fd_teleport" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "slipstream_abi_v1"))
  (func (export "slipstream_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "slipstream_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "slipstream_output") (result i64) (i64.const 0))
  (func (export "slipstream_record") (param i32 i32 i32 i32 i32 i64) (result i32) (i32.const 0))
)
