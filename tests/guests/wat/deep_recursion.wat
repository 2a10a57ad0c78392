;; Recurses without end until the wasm stack overflows.
(func $down (param i64) (result i64)
  (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (drop (call $down (i64.const 0)))
  (unreachable))
