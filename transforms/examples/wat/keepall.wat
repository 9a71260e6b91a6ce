;; keepall: a slipstream ABI v1 transform, written by hand, that keeps every
;; record. It implements every export, including the batched entry point;
;; see transforms/ABI.md.
;;
;; Memory layout: page 0 holds the error message below; the input buffer
;; starts at 64 KiB and the batch output follows the input buffer.
(module
  (memory (export "memory") 1)

  ;; Error body: u32 length, then the message.
  (data (i32.const 0) "\0d\00\00\00out of memory")

  (global $in_len (mut i32) (i32.const 0))  ;; size of the input buffer
  (global $out_ptr (mut i32) (i32.const 0))
  (global $out_len (mut i32) (i32.const 0))

  ;; The marker: its presence declares ABI v1. The host never calls it.
  (func (export "slipstream_abi_v1"))

  ;; $ensure grows memory to at least $end bytes and returns 0 if it cannot.
  (func $ensure (param $end i32) (result i32)
    (local $pages i32)
    (local.set $pages
      (i32.sub
        (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then
        (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.const 1))

  ;; One input buffer at 64 KiB, grown as the host asks.
  (func (export "slipstream_alloc") (param $size i32) (result i32)
    (if (i32.eqz (call $ensure (i32.add (i32.const 65536) (local.get $size))))
      (then (return (i32.const 0))))
    (global.set $in_len (local.get $size))
    (i32.const 65536))

  ;; (ptr << 32) | len of the last output.
  (func (export "slipstream_output") (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (global.get $out_ptr)) (i64.const 32))
      (i64.extend_i32_u (global.get $out_len))))

  ;; Any configuration is accepted: status 0.
  (func (export "slipstream_init") (param $ptr i32) (param $len i32) (result i32)
    (i32.const 0))

  ;; Every record is kept: verdict 0.
  (func (export "slipstream_record")
    (param $op i32) (param $key_ptr i32) (param $key_len i32)
    (param $val_ptr i32) (param $val_len i32) (param $revision i64)
    (result i32)
    (i32.const 0))

  ;; The batch output is one u32 verdict 0 (keep) per record. The input
  ;; starts with the record count.
  (func (export "slipstream_batch") (param $ptr i32) (param $len i32) (result i32)
    (global.set $out_ptr (i32.add (i32.const 65536) (global.get $in_len)))
    (global.set $out_len (i32.shl (i32.load (local.get $ptr)) (i32.const 2)))
    (if (i32.eqz (call $ensure (i32.add (global.get $out_ptr) (global.get $out_len))))
      (then
        ;; Status 3: the output is the error body at address 0.
        (global.set $out_ptr (i32.const 0))
        (global.set $out_len (i32.const 17))
        (return (i32.const 3))))
    (memory.fill (global.get $out_ptr) (i32.const 0) (global.get $out_len))
    (i32.const 0))
)
