;; Test guest: answers each record with the record's own value, so that a
;; test can send any answer, well-formed or not, through the real host.
;;
;; A put's value is "u32 verdict, then the body": slipstream_record returns
;; the verdict and its output is the rest of the value; slipstream_batch
;; writes each record's value as its result entry. A record whose value is
;; shorter than 4 bytes (every delete and purge) is kept.
;;
;; A batch holding a record whose verdict word is 0xfffffff0 fails as a
;; whole: status 3, with the rest of that value as the error body. (Record by
;; record the same word is an undefined verdict.)
;;
;; Memory: the input buffer starts at 64 KiB; a batch's output follows it.
(module
  (func (export "slipstream_abi_v1"))
  (memory (export "memory") 2)
  (global $in_size (mut i32) (i32.const 0))
  (global $out_ptr (mut i32) (i32.const 0))
  (global $out_len (mut i32) (i32.const 0))

  ;; The buffer at 65536 is followed by as many bytes again for output.
  (func (export "slipstream_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need
      (i32.sub
        (i32.shr_u
          (i32.add (i32.add (i32.const 65536) (i32.shl (local.get $size) (i32.const 1))) (i32.const 65535))
          (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then
        (if (i32.eq (memory.grow (local.get $need)) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $in_size (local.get $size))
    (i32.const 65536))

  (func (export "slipstream_output") (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (global.get $out_ptr)) (i64.const 32))
      (i64.extend_i32_u (global.get $out_len))))

  (func (export "slipstream_init") (param i32 i32) (result i32)
    (global.set $out_len (i32.const 0))
    (i32.const 0))

  (func (export "slipstream_record")
    (param $op i32) (param $key i32) (param $key_len i32)
    (param $val i32) (param $val_len i32) (param $rev i64) (result i32)
    (global.set $out_len (i32.const 0))
    (if (i32.lt_u (local.get $val_len) (i32.const 4))
      (then (return (i32.const 0))))
    (global.set $out_ptr (i32.add (local.get $val) (i32.const 4)))
    (global.set $out_len (i32.sub (local.get $val_len) (i32.const 4)))
    (i32.load (local.get $val)))

  (func $batch (export "slipstream_batch") (param $ptr i32) (param $len i32) (result i32)
    (local $count i32) (local $p i32) (local $o i32)
    (local $key_len i32) (local $val_len i32) (local $val i32)
    (local.set $count (i32.load (local.get $ptr)))
    (local.set $p (i32.add (local.get $ptr) (i32.const 4)))
    (local.set $o (i32.add (i32.const 65536) (global.get $in_size)))
    (global.set $out_ptr (local.get $o))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $count)))
        (local.set $key_len (i32.load offset=4 (local.get $p)))
        (local.set $val_len (i32.load offset=8 (local.get $p)))
        (local.set $val (i32.add (i32.add (local.get $p) (i32.const 20)) (local.get $key_len)))
        (if (i32.lt_u (local.get $val_len) (i32.const 4))
          (then
            (i32.store (local.get $o) (i32.const 0))
            (local.set $o (i32.add (local.get $o) (i32.const 4))))
          (else
            (if (i32.eq (i32.load (local.get $val)) (i32.const 0xfffffff0))
              (then
                (global.set $out_ptr (i32.add (local.get $val) (i32.const 4)))
                (global.set $out_len (i32.sub (local.get $val_len) (i32.const 4)))
                (return (i32.const 3))))
            (memory.copy (local.get $o) (local.get $val) (local.get $val_len))
            (local.set $o (i32.add (local.get $o) (local.get $val_len)))))
        (local.set $p (i32.add (local.get $val) (local.get $val_len)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $next)))
    (global.set $out_len (i32.sub (local.get $o) (global.get $out_ptr)))
    (i32.const 0))
)
