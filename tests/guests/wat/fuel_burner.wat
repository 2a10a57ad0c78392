;; Finite but costly: counts down payload-length x 1,000,000 loop iterations,
;; then replies "done". CPU-bound work for fuel and scaling tests.
(data (i32.const 512) "done")
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (local $n i64)
  (local.set $n (i64.mul (i64.extend_i32_u (local.get 5)) (i64.const 1000000)))
  (block $done (loop $burn
    (br_if $done (i64.eqz (local.get $n)))
    (local.set $n (i64.sub (local.get $n) (i64.const 1)))
    (br $burn)))
  (call $reply_some (i32.const 512) (i32.const 4)))
