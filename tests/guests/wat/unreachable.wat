;; Traps at once with `unreachable`.
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (unreachable))
