;; Test guest: keeps every record, but answers malformed: for keys starting
;; with "!" a rewrite whose output lies outside memory, for keys starting
;; with "?" verdict 7, which ABI v1 does not define.
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
  (func (export "slipstream_output") (result i64) (i64.const 0xffff000000000040))
  (func (export "slipstream_record")
    (param $op i32) (param $key i32) (param $key_len i32) (param i32 i32 i64) (result i32)
    (if (i32.and (i32.ne (local.get $key_len) (i32.const 0)) (i32.eq (i32.load8_u (local.get $key)) (i32.const 33)))
      (then (return (i32.const 2))))
    (if (i32.and (i32.ne (local.get $key_len) (i32.const 0)) (i32.eq (i32.load8_u (local.get $key)) (i32.const 63)))
      (then (return (i32.const 7))))
    (i32.const 0))
)
