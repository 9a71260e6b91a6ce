;; Test guest: slipstream_record has the wrong type.
(module
  (func (export "slipstream_abi_v1"))
  (memory (export "memory") 1)
  (func (export "slipstream_alloc") (param $size i32) (result i32)
    (local $pages i32)
    (local.set $pages
      (i32.sub
        (i32.shr_u (i32.add (local.get $size) (i32.const 131071)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then
        (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.const 65536))
  (func (export "slipstream_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "slipstream_output") (result i64) (i64.const 0))
  (func (export "slipstream_record") (param i32 i32) (result i32) (i32.const 0))
)
